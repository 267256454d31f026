"""MC service IDs, system domains and the "is this ID external to system X" question.

Working assumption WA-IC-18 (docs/PROFILE.md): MC service IDs and MC group IDs are SIP URIs
``sip:user@domain`` whose host part names the MC system; host comparison is case-insensitive,
the user part is compared exactly.  An ID is *local* when its host is one of this system's
domains, *external of partner X* when its host is one of X's domains, otherwise *unknown*.
TS 33.180 clause 11.1.1 calls the second kind an "external MC service ID".
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cryptography import x509

from mcinterconnect.sip.uri import NameAddr, SipSyntaxError, SipUri


class IdentityError(ValueError):
    """A value that is not an MC service ID."""


@dataclass(frozen=True)
class McServiceId:
    """An MC service ID (MCPTT ID, MCData ID, group ID, PSI): ``sip:user@domain``."""

    user: str
    domain: str

    @classmethod
    def parse(cls, text: str) -> McServiceId:
        """Parse a URI or a name-addr (``"Alice" <sip:alice@a.mc.example>;tag=1``)."""
        text = text.strip()
        try:
            uri = SipUri.parse(NameAddr.parse(text).uri if "<" in text else text)
        except SipSyntaxError as exc:
            raise IdentityError(f"not an MC service ID: {exc.reason}") from None
        if uri.user is None:
            raise IdentityError(f"MC service ID without user part: {text[:80]!r}")
        return cls(uri.user, uri.host.lower())

    def __str__(self) -> str:
        return f"sip:{self.user}@{self.domain}"


def certificate_ids(certificate: x509.Certificate) -> list[str]:
    """The MC service IDs a certificate names: its subjectAltName URIs that are canonical
    ``sip:user@domain`` (other schemes and non-canonical spellings ignored: a UID hashes the URI
    as written).  A missing or malformed extension names no one."""
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        uris = extension.value.get_values_for_type(x509.UniformResourceIdentifier)
    except (x509.ExtensionNotFound, ValueError):
        return []
    identities: list[str] = []
    for uri in uris:
        if not uri.lower().startswith("sip:"):
            continue
        try:
            identity = McServiceId.parse(uri)
        except IdentityError:
            continue
        if str(identity) == uri:
            identities.append(uri)
    return identities


class CertificateIdentityError(ValueError):
    """A client certificate that does not authenticate one MC service ID of this system:
    ``reason`` is ``identity-missing``, ``identity-ambiguous`` or ``identity-not-local``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def certificate_identity(certificate: x509.Certificate | None, domains: Iterable[str]) -> str:
    """The MC service ID a verified client certificate authenticates (the KMS, the HTTP proxy's
    client side): its one ``certificate_ids`` entry, of one of ``domains``; else
    ``CertificateIdentityError``."""
    if certificate is None:
        raise CertificateIdentityError("identity-missing", "no client certificate")
    identities = certificate_ids(certificate)
    if not identities:
        raise CertificateIdentityError("identity-missing", "no MC service ID in the client certificate")
    if len(identities) > 1:
        raise CertificateIdentityError(
            "identity-ambiguous", f"{len(identities)} MC service IDs in the certificate"
        )
    if McServiceId.parse(identities[0]).domain not in {domain.lower() for domain in domains}:
        raise CertificateIdentityError("identity-not-local", f"{identities[0]} is not of this system")
    return identities[0]


class Origin(enum.Enum):
    """Where an identity is homed, as seen from one system."""

    LOCAL = "local"
    PARTNER = "partner"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Classification:
    origin: Origin
    partner: str | None = None


class DomainMap:
    """This system's domains and each partner's domains; classifies identities (WA-IC-18)."""

    def __init__(self, own_domains: Iterable[str], partner_domains: Mapping[str, Iterable[str]]) -> None:
        self.own = frozenset(domain.lower() for domain in own_domains)
        self._partner_of: dict[str, str] = {}
        for partner, domains in partner_domains.items():
            for domain in domains:
                self._partner_of[domain.lower()] = partner

    def classify_domain(self, domain: str) -> Classification:
        lower = domain.lower()
        if lower in self.own:
            return Classification(Origin.LOCAL)
        partner = self._partner_of.get(lower)
        if partner is not None:
            return Classification(Origin.PARTNER, partner)
        return Classification(Origin.UNKNOWN)

    def classify(self, identity: McServiceId) -> Classification:
        return self.classify_domain(identity.domain)

    def is_external_of(self, identity: McServiceId, partner: str) -> bool:
        """True when ``identity`` is an external MC service ID homed in ``partner``."""
        result = self.classify(identity)
        return result.origin is Origin.PARTNER and result.partner == partner

    def partner_for_domain(self, domain: str) -> str | None:
        return self._partner_of.get(domain.lower())
