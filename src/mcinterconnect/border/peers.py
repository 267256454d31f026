"""Which partner a TLS peer is: the certificate check shared by the IS proxy and the HTTP proxy.

TS 33.180 11.1.1 (the border talks to partner border elements only, "preventing any direct MC
client connection"), BC-1 and WA-IC-17 (docs/PROFILE.md P-01): a peer is partner X's border
element only if its certificate is **issued by one of X's trust anchors and** carries X's
configured host name as a subjectAltName dNSName.  A partner's CA cannot vouch for another
partner, and a name alone proves nothing.  No I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

from cryptography import x509

from mcinterconnect.tlsprofile import dns_names, issued_by


@dataclass(frozen=True)
class PartnerPeer:
    """What a partner's border element must show: its host name (SAN dNSName) and the anchors
    one of which issued its certificate; ``sources``, when not empty, the addresses it may
    connect from (an optional allow-list; the certificate decides otherwise)."""

    partner: str
    host: str
    anchors: Sequence[x509.Certificate]
    sources: Collection[str] = field(default_factory=frozenset)


def identify_partner(
    certificate: x509.Certificate, remote_host: str, peers: Iterable[PartnerPeer]
) -> str | None:
    """The name of the first partner in ``peers`` whose border element ``certificate`` (seen from
    ``remote_host``) authenticates, else ``None``."""
    names = {name.lower() for name in dns_names(certificate)}
    for peer in peers:
        if peer.host.lower() not in names:
            continue
        if peer.sources and remote_host not in peer.sources:
            continue
        if any(issued_by(certificate, anchor) for anchor in peer.anchors):
            return peer.partner
    return None


class PartnerPeers:
    """``identify_partner`` over fixed ``peers``, with each verdict cached per (certificate,
    address): it never changes while the configuration stands, and the cache keeps a signature
    verification off the per-message path.  Bounded: cleared when ``cache_size`` is reached."""

    def __init__(self, peers: Iterable[PartnerPeer], *, cache_size: int = 1024) -> None:
        self.peers = tuple(peers)
        self._cache_size = cache_size
        self._cache: dict[tuple[x509.Certificate, str], str | None] = {}

    def identify(self, certificate: x509.Certificate | None, remote_host: str) -> str | None:
        """The partner whose border element presented ``certificate`` from ``remote_host``."""
        if certificate is None:
            return None
        key = (certificate, remote_host)
        if key not in self._cache:
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[key] = identify_partner(certificate, remote_host, self.peers)
        return self._cache[key]
