"""Issue 6 end to end: two systems from ``mcic init``, HTTP proxies, GMSs and KMSs on real sockets.

GMS A keeps the B-homed group ``sip:rescue@b.mc.example`` by polling GMS B through HTTP proxy A
→ HTTP-3 (mutual TLS) → HTTP proxy B (WA-IC-06, WA-IC-21); alice reads it, and its GMK, from her
own GMS through her own HTTP proxy's client side only; the GMK crosses B → A → alice re-wrapped
(WA-IC-22) and opens to the same 16 octets bob gets from GMS B.  Clients that try to reach the
partner directly are refused.  What crosses HTTP-3 is checked for internal names (leak test).
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from pathlib import Path
from urllib.parse import quote

import aiohttp

from curl_helpers import CurlAnswer, curl, needs_curl
from mcinterconnect.crypto.mikey import open_i_message
from mcinterconnect.crypto.uid import ntp_seconds
from mcinterconnect.deploy.config import SystemConfig, load_deployment
from mcinterconnect.deploy.init import init_deployment
from mcinterconnect.deploy.users import user_context
from mcinterconnect.services.groupdoc import GroupDocument
from mcinterconnect.services.kms import read_kms
from system_helpers import Running, run, running

GROUP_B = "sip:rescue@b.mc.example"
GROUP_A = "sip:police@a.mc.example"
ALICE = "sip:alice@a.mc.example"
BOB = "sip:bob@b.mc.example"
PREFIX = "/org.openmobilealliance.groups"


def _deploy(directory: Path, *, explicit: bool = False) -> tuple[SystemConfig, SystemConfig]:
    path = init_deployment(directory, explicit=explicit)
    for letter in ("a", "b"):  # poll fast: the test waits for the first copy
        system = directory / letter / "system.toml"
        system.write_text(system.read_text().replace("poll_interval = 2", "poll_interval = 0.2"))
    a, b = load_deployment(path).systems
    return a, b


async def _get(
    config: SystemConfig,
    user: str,
    path: str,
    *,
    host: str,
    port: int,
    server_name: str,
    also_trust: SystemConfig | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes, dict[str, str]]:
    timeout = aiohttp.ClientTimeout(total=5)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(
            f"https://{host}:{port}{path}",
            ssl=user_context(config, user, also_trust=also_trust),
            server_hostname=server_name,
            headers=headers,
        ) as response,
    ):
        return response.status, await response.read(), dict(response.headers)


async def _own_get(config: SystemConfig, user: str, path: str) -> tuple[int, bytes, dict[str, str]]:
    """GET through the user's own HTTP proxy, client side."""
    assert config.http_proxy is not None
    face = config.http_proxy.client_listen
    return await _get(
        config, user, path, host=face.host, port=face.port, server_name=config.http_proxy.public_host
    )


async def _wait_for_group(config: SystemConfig, user: str, group: str) -> GroupDocument:
    path = f"{PREFIX}/groups/{quote(group, safe='')}"
    status, body = 0, b""
    for _ in range(50):
        status, body, _headers = await _own_get(config, user, path)
        if status == 200:
            return GroupDocument.from_xml(body)
        await asyncio.sleep(0.1)
    raise AssertionError(f"{group} not served to {user}: {status} {body[:200]!r}")


def _open_gmk(config: SystemConfig, user: str, message: bytes, *, gms: str) -> tuple[bytes, int | None]:
    """Open a GMK I_MESSAGE as ``user`` with keys provisioned by the user's own KMS."""
    assert config.kms is not None
    kms = read_kms(config.kms)
    certificate = kms.certificate
    number = certificate.key_period.number_at(ntp_seconds(time.time()))
    [keys] = kms.provision(user, [number])
    opened = open_i_message(
        message,
        initiator_kpak=certificate.pub_auth_key,
        initiator_period=certificate.key_period,
        responder_period=certificate.key_period,
        responder_rsk=keys.rsk,
        responder_z=certificate.pub_enc_key,
        expected_responder_uri=user,
        expected_initiator_uri=gms,
    )
    return opened.key, opened.gmk_id


def _sent(state: Running, name: str) -> bytes:
    return b"".join(state.http3[name])


def _chain(tmp_path: Path, *, explicit: bool) -> None:
    a, b = _deploy(tmp_path / "d", explicit=explicit)

    async def scenario() -> None:
        async with running(("B", b), ("A", a)) as state:
            # alice sees the B-homed group from her own GMS: only A-homed members (WA-IC-12)
            document = await _wait_for_group(a, "alice", GROUP_B)
            assert document.group_id == GROUP_B
            assert [member.id for member in document.members] == [ALICE]
            assert document.display_name == "Rescue B"
            assert document.visibility == ()
            # the GMK: B → A (signed by GMS B, to GMS A) → alice (signed by GMS A, to alice)
            status, message, headers = await _own_get(a, "alice", f"{PREFIX}/gmk/{quote(GROUP_B, safe='')}")
            assert status == 200, message[:200]
            alice_gmk, alice_gmk_id = _open_gmk(
                a, ALICE, _mikey_bytes(message, headers), gms="sip:gms@a.mc.example"
            )
            status, message, headers = await _own_get(b, "bob", f"{PREFIX}/gmk/{quote(GROUP_B, safe='')}")
            assert status == 200, message[:200]
            bob_gmk, bob_gmk_id = _open_gmk(
                b, BOB, _mikey_bytes(message, headers), gms="sip:gms@b.mc.example"
            )
            assert len(alice_gmk) == 16 and alice_gmk == bob_gmk
            assert alice_gmk_id == bob_gmk_id is not None
            # and the other way: bob sees A's group with only B-homed members
            document = await _wait_for_group(b, "bob", GROUP_A)
            assert [member.id for member in document.members] == [BOB]
            # leak test on HTTP-3: no internal address of the sender, and A never names alice
            for name, config in (("A", a), ("B", b)):
                sent = _sent(state, name)
                assert sent, f"{name} sent nothing across HTTP-3"
                for marker in config.internal_markers():
                    assert marker.encode() not in sent, (name, marker)
                for header in (b"\r\nvia:", b"\r\nforwarded:", b"\r\nx-forwarded-", b"\r\nuser-agent:"):
                    assert header not in sent.lower(), (name, header)
                # no product or version: the only Server value is the proxy's generic one
                assert b"aiohttp" not in sent.lower() and b"python" not in sent.lower()
                servers = {line for line in sent.lower().split(b"\r\n") if line.startswith(b"server:")}
                assert servers <= {b"server: http-proxy"}, servers
            requests_a = [chunk for chunk in state.http3["A"] if chunk.startswith(b"GET ")]
            assert requests_a and not any(b"alice" in chunk for chunk in requests_a)
            if explicit:
                assert all(b"\r\nmc-ear:" in chunk.lower() for chunk in requests_a)

    run(scenario(), deadline=60)


def _mikey_bytes(body: bytes, headers: dict[str, str]) -> bytes:
    """The I_MESSAGE of a GMK response (binary ``application/mikey``, or its base64 text)."""
    if "base64" in headers.get("Content-Transfer-Encoding", "") + headers.get("Content-Type", ""):
        return base64.b64decode(body, validate=True)
    return body


def test_partner_group_and_its_key_reach_alice_from_her_own_gms(tmp_path: Path) -> None:
    _chain(tmp_path, explicit=False)


def test_the_chain_with_explicit_authentication(tmp_path: Path) -> None:
    _chain(tmp_path, explicit=True)


def test_clients_never_reach_the_partner(tmp_path: Path) -> None:
    a, b = _deploy(tmp_path / "d")
    assert b.http_proxy is not None

    async def scenario() -> None:
        async with running(("B", b), ("A", a)) as state:
            # alice with her own certificate, straight at B's HTTP-3 and at B's client side
            outcomes = []
            for face in (b.http_proxy.http3_listen, b.http_proxy.client_listen):  # type: ignore[union-attr]
                try:
                    status, body, _headers = await _get(
                        a,
                        "alice",
                        f"{PREFIX}/groups/{quote(GROUP_B, safe='')}",
                        host=face.host,
                        port=face.port,
                        server_name=b.http_proxy.public_host,  # type: ignore[union-attr]
                        also_trust=b,
                    )
                    outcomes.append(f"{status} {body.decode(errors='replace').strip()}")
                except (aiohttp.ClientError, ssl.SSLError, ConnectionError):
                    outcomes.append("refused in the handshake")
            # HTTP-3 trusts A's CA (the partner's), so alice's handshake passes but she is not A's
            # HTTP proxy; B's client side trusts B's own CA only.
            assert outcomes == ["403 peer-unknown", "refused in the handshake"], outcomes
            # on her own client side, a Host naming the partner still reaches only her own GMS
            assert a.http_proxy is not None
            face = a.http_proxy.client_listen
            status, _body, _headers = await _get(
                a,
                "alice",
                f"{PREFIX}/groups/{quote('sip:nobody@b.mc.example', safe='')}",
                host=face.host,
                port=face.port,
                server_name=a.http_proxy.public_host,
                headers={"Host": "b.mc.example"},
            )
            assert status == 404
            assert not any(b"nobody" in chunk for chunk in state.http3["A"]), (
                "a client request crossed HTTP-3"
            )

    run(scenario(), deadline=30)


@needs_curl
def test_curl_is_refused_on_the_partner_facing_port(tmp_path: Path) -> None:
    """A real HTTP client at B's HTTP-3 port: without a certificate, and with a client
    certificate of B's own system (bob), the handshake or the request is refused."""
    a, b = _deploy(tmp_path / "d")
    assert b.http_proxy is not None
    host, face = b.http_proxy.public_host, b.http_proxy.http3_listen
    path = f"{PREFIX}/groups/{quote(GROUP_B, safe='')}"
    folder = b.source.parent
    answers: list[CurlAnswer] = []

    async def scenario() -> None:
        async with running(("B", b), ("A", a)):
            for extra in (
                [],
                ["--cert", str(folder / "users" / "bob.crt"), "--key", str(folder / "users" / "bob.key")],
            ):
                ca = folder / "pki" / "ca.crt"
                answers.append(await curl(host, face.port, path, ca, *extra, address=face.host, timeout=5))

    run(scenario(), deadline=45)
    for answer in answers:
        # refused in the TLS handshake (curl exit 35/56/...), never an HTTP answer from the GMS
        assert answer.exit_code != 0 and answer.status == 0, answer
