"""The HTTP proxy over real loopback TLS (TS 33.180 11.1.1; WA-IC-06, WA-IC-10/11, WA-IC-14).

Two systems: A (a.mc.example, HTTP proxy ``hp.a.mc.example``) and B (b.mc.example,
``hp.b.mc.example``), each with its own CA.  A small aiohttp server stands for each system's GMS
and echoes what it received; B's also answers 500, slowly, or with revealing headers on request.
Requests: A's GMS → A's internal face → HTTP-3 → B's HTTP-3 face → B's GMS, and own clients →
A's client face → A's GMS (with ``curl``, a client the project did not write).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import json
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from curl_helpers import curl, needs_curl
from mcinterconnect.border.agreement import HttpProxySettings, PartnerAgreement
from mcinterconnect.border.audit import AuditLog
from mcinterconnect.border.httpproxy import HTTP3_FACE, HttpProxy, HttpProxyError, start_http_proxy
from mcinterconnect.crypto.kms import Kms, KmsCertificate
from mcinterconnect.crypto.uid import ntp_seconds
from mcinterconnect.deploy.pki import create_ca, issue_certificate, write_pem, write_private_key
from mcinterconnect.protect.ear import (
    RequestPayload,
    RequestType,
    Role,
    new_payload,
    sign_ear_header,
)
from mcinterconnect.protect.replay import MemoryReplayStore, ReplayStoreUnavailable
from mcinterconnect.tlsprofile import client_context
from pki_helpers import Identity
from system_helpers import run as run_bounded

DEADLINE = 30.0
GROUPS = "/org.openmobilealliance.groups/groups/"
GMS_A = "sip:gms@a.mc.example"
GMS_B = "sip:gms@b.mc.example"
ALICE = "sip:alice@a.mc.example"


#: Every scenario on a fresh event loop, bounded in time (``system_helpers.run``).
run = functools.partial(run_bounded, deadline=DEADLINE)


# --- PKI -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca_a: Path
    ca_b: Path
    proxy_a: Identity
    proxy_b: Identity
    alice: Identity
    b_client: Identity
    a_wrong_name: Identity
    directory: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    cas = {name: create_ca(f"MC system {name.upper()} CA", days=2) for name in ("a", "b")}
    for name, (cert, _) in cas.items():
        write_pem(directory / f"ca-{name}.crt", cert)

    def issue(stem: str, system: str, dns: list[str], uris: list[str] | None = None) -> Identity:
        ca_cert, ca_key = cas[system]
        cert, key = issue_certificate(ca_cert, ca_key, dns, uris=uris, common_name=stem, days=1)
        identity = Identity(directory / f"{stem}.crt", directory / f"{stem}.key")
        write_pem(identity.cert, cert)
        write_private_key(identity.key, key)
        return identity

    return Pki(
        ca_a=directory / "ca-a.crt",
        ca_b=directory / "ca-b.crt",
        proxy_a=issue("hp-a", "a", ["hp.a.mc.example"]),
        proxy_b=issue("hp-b", "b", ["hp.b.mc.example"]),
        alice=issue("alice", "a", [], [ALICE]),
        b_client=issue("bob", "b", [], ["sip:bob@b.mc.example"]),
        a_wrong_name=issue("other-a", "a", ["other.a.mc.example"]),
        directory=directory,
    )


@pytest.fixture(scope="module")
def kms_a() -> Kms:
    return Kms.create("kms.a.mc.example", issuer="MC system A")


# --- the GMS stand-ins ---------------------------------------------------------------------------


@dataclass
class Upstream:
    """An echoing HTTP server standing for a system's GMS; ``seen`` lists what reached it."""

    seen: list[dict[str, Any]] = field(default_factory=list)
    runner: web.AppRunner | None = None
    port: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        async def handle(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            echo = {
                "method": request.method,
                "path": request.raw_path,
                "headers": [[name, value] for name, value in request.headers.items()],
                "body": body.decode("latin-1"),
            }
            self.seen.append(echo)
            leaky = {
                "Server": "secret-backend/9.9",
                "X-Powered-By": "internal-framework",
                "Via": f"1.1 {self.address}",
                "X-Forwarded-For": "10.1.2.3",
                "Forwarded": "for=10.1.2.3",
                "Set-Cookie": "session=internal",
            }
            if request.path.endswith("/err500"):
                return web.Response(
                    status=500, text=f"Traceback at {self.address} in gms.py line 42", headers=leaky
                )
            if request.path.endswith("/slow"):
                await asyncio.sleep(3)
            if request.path.endswith("/big"):
                return web.Response(body=b"x" * 10_000)
            if request.path.endswith("/redirect"):
                headers = {**leaky, "Location": f"http://{self.address}{GROUPS}moved?x=1"}
                return web.Response(status=302, headers=headers)
            return web.json_response(echo, headers=leaky)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


# --- two systems -------------------------------------------------------------------------------


@dataclass
class World:
    a: HttpProxy
    b: HttpProxy
    gms_a: Upstream
    gms_b: Upstream
    audit_a: AuditLog
    audit_b: AuditLog
    sent_by_a: bytearray
    sent_by_b: bytearray
    pki: Pki
    replay: MemoryReplayStore

    def url(self, proxy: HttpProxy, face: str, path: str, scheme: str = "http") -> str:
        host, port = proxy.addresses[face]
        return f"{scheme}://{host}:{port}{path}"

    def refusals(self, audit: AuditLog) -> list[str]:
        return [str(entry["reason"]) for entry in audit.recent if entry["decision"] == "refuse"]


def settings_for(identity: Identity, ca: Path, gms: Upstream, **extra: Any) -> HttpProxySettings:
    return HttpProxySettings(
        client_listen="127.0.0.1:0",
        internal_listen="127.0.0.1:0",
        http3_listen="127.0.0.1:0",
        public_host=identity.cert.stem.replace("-", ".") + ".mc.example",
        certificate=identity.cert,
        private_key=identity.key,
        client_trust_anchors=[ca],
        routes={GROUPS: gms.address, "/org.openmobilealliance.groups/": gms.address},
        max_body_bytes=4096,
        timeout=1.0,
        **extra,
    )


def agreement(
    name: str, ca: Path, http_address: str, *, rules: list[str] | None = None, **extra: Any
) -> PartnerAgreement:
    return PartnerAgreement(
        name=name,
        domains=[f"{name}.mc.example"],
        is_proxy_host=f"isp.{name}.mc.example",
        is_proxy_address="tls://127.0.0.1:5061",
        trust_anchors=[ca],
        http_proxy_host=f"hp.{name}.mc.example",
        http_proxy_address=http_address,
        http_allowed=rules or [f"GET {GROUPS}", f"PUT {GROUPS}"],
        **extra,
    )


@contextlib.asynccontextmanager
async def world(
    pki: Pki,
    *,
    explicit: KmsCertificate | None = None,
    replay: MemoryReplayStore | None = None,
    b_rules: list[str] | None = None,
) -> AsyncIterator[World]:
    gms_a, gms_b = Upstream(), Upstream()
    await gms_a.start()
    await gms_b.start()
    audit_a = AuditLog(None, system="A", component="http-proxy")
    audit_b = AuditLog(None, system="B", component="http-proxy")
    sent_by_a, sent_by_b = bytearray(), bytearray()
    replay = MemoryReplayStore() if replay is None else replay
    stack = contextlib.AsyncExitStack()
    try:
        stack.push_async_callback(gms_a.close)
        stack.push_async_callback(gms_b.close)
        kms_file = pki.directory / "kms-a.xml"
        kms_file.write_text("<placeholder/>")
        partner_a = agreement(
            "a",
            pki.ca_a,
            "127.0.0.1:9",
            rules=b_rules,
            **({"authentication": {"inbound": "explicit"}, "kms_certificate": kms_file} if explicit else {}),
        )
        b = await start_http_proxy(
            settings_for(pki.proxy_b, pki.ca_b, gms_b),
            domains=["b.mc.example"],
            partners=[partner_a],
            partner_kms={"a": explicit} if explicit else {},
            own_psis=[GMS_B],
            ear_skew=30.0,
            replay_store=replay,
            audit=audit_b,
            wire_tap=sent_by_b.extend,
        )
        stack.push_async_callback(b.close)
        host, port = b.addresses[HTTP3_FACE]
        partner_b = agreement(
            "b",
            pki.ca_b,
            f"{host}:{port}",
            **({"authentication": {"outbound": "explicit"}} if explicit else {}),
        )
        a = await start_http_proxy(
            settings_for(pki.proxy_a, pki.ca_a, gms_a),
            domains=["a.mc.example"],
            partners=[partner_b],
            partner_kms={},
            own_psis=[GMS_A],
            ear_skew=30.0,
            replay_store=None,
            audit=audit_a,
            wire_tap=sent_by_a.extend,
        )
        stack.push_async_callback(a.close)
        yield World(a, b, gms_a, gms_b, audit_a, audit_b, sent_by_a, sent_by_b, pki, replay)
    finally:
        await stack.aclose()


def names(headers: list[list[str]]) -> set[str]:
    return {name.lower() for name, _ in headers}


def value(headers: list[list[str]], name: str) -> list[str]:
    return [v for n, v in headers if n.lower() == name.lower()]


async def exit_request(
    w: World, path: str, *, method: str = "GET", host: str = "b.mc.example", **headers: str
) -> tuple[int, bytes, aiohttp.typedefs.LooseHeaders]:
    base = {"Host": host, "X-3GPP-Asserted-Identity": GMS_A}
    base.update({name.replace("_", "-"): v for name, v in headers.items()})
    data = base.pop("body", None)
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method,
            URL(w.url(w.a, "internal", path), encoded=True),
            headers=base,
            data=data,
            allow_redirects=False,
        ) as response,
    ):
        return response.status, await response.read(), response.headers


# --- (a) delivery and header hygiene -------------------------------------------------------------


def test_exit_to_entry_delivers_with_identity_and_strips_internals(pki: Pki) -> None:
    async def scenario() -> None:
        async with world(pki) as w:
            status, body, headers = await exit_request(
                w,
                GROUPS + "sip%3Afire%40b.mc.example?x=1",
                Via="1.1 gms-a.internal:7080",
                Forwarded="for=10.0.0.7",
                X_Forwarded_For="10.0.0.7",
                X_Real_IP="10.0.0.7",
                Server="gms-a",
                Cookie="sid=1",
                Connection="close, X-Internal-Hop",
                X_Internal_Hop="secret",
                User_Agent="gms-a/1.0",
            )
            assert status == 200, body
            echo = json.loads(body)
            assert echo["path"] == GROUPS + "sip%3Afire%40b.mc.example?x=1"
            seen = echo["headers"]
            assert value(seen, "X-3GPP-Asserted-Identity") == [GMS_A]
            assert not names(seen) & {
                "via",
                "forwarded",
                "x-forwarded-for",
                "x-real-ip",
                "server",
                "cookie",
                "x-internal-hop",
                "mc-ear",
            }
            assert not any("gms-a" in v for _, v in seen)
            assert value(seen, "Host") == ["b.mc.example"]  # set by B: its own domain, no address
            # The way back: B's GMS revealed itself; nothing of it reaches A's GMS.
            for name in ("Via", "X-Forwarded-For", "Forwarded", "X-Powered-By", "Set-Cookie"):
                assert name not in headers
            assert headers["Server"] == "http-proxy"
            assert [e["reason"] for e in w.audit_a.recent] == ["allowed"]
            assert [e["reason"] for e in w.audit_b.recent] == ["allowed"]
            assert w.audit_b.recent[0]["partner"] == "a"
            assert w.audit_b.recent[0]["identity"] == GMS_A

    run(scenario())


def test_location_keeps_only_path_and_query(pki: Pki) -> None:
    async def scenario() -> None:
        async with world(pki) as w:
            status, _, headers = await exit_request(w, GROUPS + "redirect")
            assert status == 302
            assert headers["Location"] == GROUPS + "moved?x=1"

    run(scenario())


def test_put_body_is_relayed(pki: Pki) -> None:
    async def scenario() -> None:
        async with world(pki) as w:
            status, body, _ = await exit_request(
                w, GROUPS + "g", method="PUT", body="<doc/>", Content_Type="application/xml"
            )
            assert status == 200
            echo = json.loads(body)
            assert echo["method"] == "PUT"
            assert echo["body"] == "<doc/>"
            assert value(echo["headers"], "Content-Type") == ["application/xml"]

    run(scenario())


# --- (d) refusals ----------------------------------------------------------------------------------


def test_exit_refusals(pki: Pki) -> None:
    async def scenario() -> None:
        async with world(pki) as w:
            cases: list[tuple[dict[str, Any], int, str]] = [
                ({"host": "c.mc.example"}, 403, "no-agreement"),
                ({"method": "DELETE"}, 403, "not-allowed"),
                ({"path": "/org.openmobilealliance.groups/gmk/x"}, 403, "not-allowed"),
                ({"path": GROUPS + "../../admin"}, 403, "not-allowed"),
                ({"path": GROUPS + "%2e%2e/admin"}, 403, "not-allowed"),
                ({"X_3GPP_Asserted_Identity": "sip:gms@b.mc.example"}, 403, "source-not-own"),
                ({"X_3GPP_Asserted_Identity": "not an id"}, 403, "source-not-own"),
                ({"method": "PUT", "body": "x" * 5000}, 413, "body-too-large"),
            ]
            for options, status, reason in cases:
                path = options.pop("path", GROUPS + "g")
                got, body, headers = await exit_request(w, path, **options)
                assert (got, body) == (status, f"{reason}\n".encode()), options
                assert headers["Server"] == "http-proxy"
            # No identity at all.
            async with (
                aiohttp.ClientSession() as session,
                session.get(w.url(w.a, "internal", GROUPS + "g"), headers={"Host": "b.mc.example"}) as r,
            ):
                assert (r.status, await r.read()) == (403, b"source-not-own\n")
            assert w.gms_b.seen == []
            assert w.refusals(w.audit_a)[-1] == "source-not-own"
            assert len(w.audit_b.recent) == 0

    run(scenario())


def test_entry_refusals_and_upstream_failures(pki: Pki) -> None:
    async def scenario() -> None:
        # B lets A read only GROUPS; A's own allow-list is wider so that B's refuses.
        async with world(pki, b_rules=[f"GET {GROUPS}"]) as w:
            status, body, _ = await exit_request(w, GROUPS + "g", method="PUT", body="<x/>")
            assert (status, body) == (403, b"not-allowed\n")
            assert w.refusals(w.audit_b) == ["not-allowed"]
            # A server of A claiming a user of A: fine for A's exit, but B requires A's domain: ok.
            status, body, _ = await exit_request(w, GROUPS + "err500")
            assert (status, body) == (502, b"upstream-error\n")
            status, body, _ = await exit_request(w, GROUPS + "slow")
            assert status == 504 and body == b"upstream-timeout\n"
            status, body, _ = await exit_request(w, GROUPS + "big")
            assert (status, body) == (502, b"response-too-large\n")
            assert w.refusals(w.audit_b)[1:] == ["upstream-error", "upstream-timeout", "response-too-large"]
            assert b"Traceback" not in bytes(w.sent_by_b)
            assert b"secret-backend" not in bytes(w.sent_by_b)

    run(scenario())


def test_entry_source_not_partner_and_missing(pki: Pki) -> None:
    """Requests that reach B's HTTP-3 face straight from a client holding A's proxy certificate
    (as A's proxy would send them if it were compromised): B's own checks refuse."""

    async def scenario() -> None:
        async with world(pki) as w:
            context = partner_client_context(pki)
            host, port = w.b.addresses[HTTP3_FACE]
            async with aiohttp.ClientSession() as session:

                async def ask(headers: dict[str, str]) -> tuple[int, bytes]:
                    async with session.get(
                        f"https://{host}:{port}{GROUPS}g",
                        headers=headers,
                        ssl=context,
                        server_hostname="hp.b.mc.example",
                    ) as response:
                        return response.status, await response.read()

                assert await ask({}) == (403, b"source-missing\n")
                assert await ask({"X-3GPP-Asserted-Identity": GMS_B}) == (403, b"source-not-partner\n")
                assert await ask({"X-3GPP-Asserted-Identity": "sip:x@c.mc.example"}) == (
                    403,
                    b"source-not-partner\n",
                )
                assert (await ask({"X-3GPP-Asserted-Identity": GMS_A}))[0] == 200
            assert len(w.gms_b.seen) == 1

    run(scenario())


def partner_client_context(pki: Pki) -> ssl.SSLContext:
    """What A's HTTP proxy uses toward B (its own certificate, B's anchors only)."""
    return client_context(trust_anchors=[pki.ca_b], cert_file=pki.proxy_a.cert, key_file=pki.proxy_a.key)


# --- (b) and (c): curl ------------------------------------------------------------------------------

#: curl exit codes of a refused handshake: 35 (TLS error), 52 (empty reply: TLS 1.3 alert after
#: the client's Finished, connection closed), 56 (receive failure).
REFUSED_BY_TLS = (35, 52, 56)


@needs_curl
def test_curl_on_http3_without_partner_certificate_is_refused(pki: Pki) -> None:
    async def scenario() -> None:
        async with world(pki) as w:
            _, port = w.b.addresses[HTTP3_FACE]
            host = "hp.b.mc.example"
            ident = ("-H", f"X-3GPP-Asserted-Identity: {GMS_A}")
            # No certificate: the handshake fails (TLS 1.3: at the first read).
            code, status, _, _ = await curl(host, port, GROUPS + "g", pki.ca_b, *ident)
            assert code in REFUSED_BY_TLS and status == 0, code
            # A client of B (B's own CA is not trusted on HTTP-3).
            code, status, _, _ = await curl(
                host, port, GROUPS + "g", pki.ca_b, "--cert", str(pki.b_client.cert), "--key",
                str(pki.b_client.key), *ident,
            )  # fmt: skip
            assert code in REFUSED_BY_TLS and status == 0, code
            # A's CA, but not A's HTTP proxy name: TLS passes, the request does not.
            code, status, _, body = await curl(
                host, port, GROUPS + "g", pki.ca_b, "--cert", str(pki.a_wrong_name.cert), "--key",
                str(pki.a_wrong_name.key), *ident,
            )  # fmt: skip
            assert (code, status, body) == (0, 403, b"peer-unknown\n")
            # A's HTTP proxy certificate: admitted.
            code, status, _, _ = await curl(
                host, port, GROUPS + "g", pki.ca_b, "--cert", str(pki.proxy_a.cert), "--key",
                str(pki.proxy_a.key), *ident,
            )  # fmt: skip
            assert (code, status) == (0, 200)
            assert len(w.gms_b.seen) == 1
            refusals = w.refusals(w.audit_b)
            assert refusals.count("tls-handshake-failed") == 2
            assert refusals[-1] == "peer-unknown"

    run(scenario())


@needs_curl
def test_curl_client_side_asserts_certificate_identity_and_never_reaches_partner(pki: Pki) -> None:
    async def scenario() -> None:
        async with world(pki) as w:
            _, port = w.a.addresses["client"]
            host = "hp.a.mc.example"
            alice = ("--cert", str(pki.alice.cert), "--key", str(pki.alice.key))
            forged = (
                "-H",
                "X-3GPP-Asserted-Identity: sip:boss@a.mc.example",
                "-H",
                "X-3GPP-Asserted-Identity: sip:gms@b.mc.example",
                "-H",
                "MC-EAR: AAAA",
            )
            code, status, _, body = await curl(host, port, GROUPS + "g", pki.ca_a, *alice, *forged)
            assert (code, status) == (0, 200), body
            seen = json.loads(body)["headers"]
            assert value(seen, "X-3GPP-Asserted-Identity") == [ALICE]
            assert "mc-ear" not in names(seen)
            # A Host naming the partner changes nothing: A's GMS gets it, B never.
            code, status, _, body = await curl(
                host, port, GROUPS + "g", pki.ca_a, *alice, "-H", "Host: b.mc.example"
            )
            assert (code, status) == (0, 200)
            assert len(w.gms_a.seen) == 2
            assert w.gms_b.seen == []
            assert len(w.audit_b.recent) == 0
            assert w.sent_by_a == bytearray()
            # Unknown path: no route.
            code, status, _, body = await curl(host, port, "/elsewhere/x", pki.ca_a, *alice)
            assert (status, body) == (404, b"no-route\n")
            # Without a client certificate: the handshake fails.
            code, status, _, _ = await curl(host, port, GROUPS + "g", pki.ca_a)
            assert code in REFUSED_BY_TLS and status == 0
            # A certificate of A without an MC service ID (the proxy's own): refused.
            code, status, _, body = await curl(
                host, port, GROUPS + "g", pki.ca_a, "--cert", str(pki.a_wrong_name.cert), "--key",
                str(pki.a_wrong_name.key),
            )  # fmt: skip
            assert (status, body) == (403, b"identity-missing\n")

    run(scenario())


# --- (e) explicit inbound ------------------------------------------------------------------------


def sign(kms: Kms, *, source_id: str = GMS_A, signer: str | None = None, target_id: str = GMS_B) -> str:
    now = time.time()
    payload = new_payload(
        source_role=Role.GMS,
        source_id=source_id,
        target_role=Role.GMS,
        target_id=target_id,
        request=RequestPayload(RequestType.GROUP),
        now=now,
    )
    certificate = kms.certificate
    number = certificate.key_period.number_at(ntp_seconds(now))
    [keys] = kms.provision(signer or source_id, [number])
    return sign_ear_header(payload, keys, certificate)


def test_explicit_inbound_once_then_replay_then_forgery(pki: Pki, kms_a: Kms) -> None:
    async def scenario() -> None:
        async with world(pki, explicit=kms_a.certificate) as w:
            # Exit: explicit outbound without an EAR never leaves A.
            status, body, _ = await exit_request(w, GROUPS + "g")
            assert (status, body) == (403, b"ear-missing\n")
            ear = sign(kms_a)
            status, body, _ = await exit_request(w, GROUPS + "g", MC_EAR=ear)
            assert status == 200, body
            assert "mc-ear" not in names(json.loads(body)["headers"])
            status, body, _ = await exit_request(w, GROUPS + "g", MC_EAR=ear)
            assert (status, body) == (403, b"ear-replay\n")
            forged = sign(kms_a, signer="sip:mallory@a.mc.example")
            status, body, _ = await exit_request(w, GROUPS + "g", MC_EAR=forged)
            assert (status, body) == (403, b"ear-signature\n")
            # Signed by A's GMS but asserting another server of A.
            status, body, _ = await exit_request(
                w, GROUPS + "g", MC_EAR=sign(kms_a), X_3GPP_Asserted_Identity="sip:other@a.mc.example"
            )
            assert (status, body) == (403, b"ear-source\n")
            status, body, _ = await exit_request(
                w, GROUPS + "g", MC_EAR=sign(kms_a, target_id="sip:x@b.mc.example")
            )
            assert (status, body) == (403, b"ear-target\n")
            status, body, _ = await exit_request(w, GROUPS + "g", MC_EAR="bm90IGFuIEVBUg==")
            assert (status, body) == (403, b"ear-malformed\n")
            assert len(w.gms_b.seen) == 1
            allowed = [e for e in w.audit_b.recent if e["decision"] == "allow"]
            assert len(allowed) == 1 and "ear" in allowed[0]

    run(scenario())


class BrokenStore(MemoryReplayStore):
    async def add_if_absent(self, key: bytes, ttl: float) -> bool:
        raise ReplayStoreUnavailable("redis unreachable: redis://127.0.0.1:1/0")


def test_explicit_inbound_fails_closed_without_store(pki: Pki, kms_a: Kms) -> None:
    async def scenario() -> None:
        async with world(pki, explicit=kms_a.certificate, replay=BrokenStore()) as w:
            status, body, _ = await exit_request(w, GROUPS + "g", MC_EAR=sign(kms_a))
            assert (status, body) == (403, b"ear-replay-store-unavailable\n")
            assert w.gms_b.seen == []
            assert b"redis" not in bytes(w.sent_by_b)

    run(scenario())


def test_start_refuses_explicit_without_store_or_kms(pki: Pki, kms_a: Kms, tmp_path: Path) -> None:
    async def scenario() -> None:
        gms = Upstream(port=1)
        kms_file = tmp_path / "kms.xml"
        kms_file.write_text("<x/>")
        partner = agreement(
            "a", pki.ca_a, "127.0.0.1:9", authentication={"inbound": "explicit"}, kms_certificate=kms_file
        )
        common: dict[str, Any] = {
            "domains": ["b.mc.example"],
            "partners": [partner],
            "own_psis": [GMS_B],
            "ear_skew": 30.0,
            "audit": AuditLog(None, system="B", component="http-proxy"),
        }
        settings = settings_for(pki.proxy_b, pki.ca_b, gms)
        with pytest.raises(HttpProxyError, match="replay store"):
            await start_http_proxy(
                settings, partner_kms={"a": kms_a.certificate}, replay_store=None, **common
            )
        with pytest.raises(HttpProxyError, match="KMS certificate"):
            await start_http_proxy(settings, partner_kms={}, replay_store=MemoryReplayStore(), **common)
        bad = settings.model_copy(update={"private_key": pki.proxy_a.key})
        with pytest.raises(HttpProxyError, match="does not match"):
            await start_http_proxy(
                bad, partner_kms={"a": kms_a.certificate}, replay_store=MemoryReplayStore(), **common
            )

    run(scenario())


# --- (f) leak test ------------------------------------------------------------------------------


def test_nothing_internal_crosses_http3(pki: Pki) -> None:
    async def scenario() -> None:
        async with world(pki) as w:
            for path in ("g", "redirect", "err500", "sip%3Afire%40b.mc.example"):
                await exit_request(
                    w,
                    GROUPS + path,
                    Via=f"1.1 {w.gms_a.address}",
                    X_Forwarded_Host=w.url(w.a, "internal", "/"),
                    Referer=f"http://{w.gms_a.address}/x",
                )
            await exit_request(w, GROUPS + "g", method="PUT", body="<doc/>")
            sent_a, sent_b = bytes(w.sent_by_a), bytes(w.sent_by_b)
            assert sent_a.startswith(b"GET " + GROUPS.encode())
            assert b"HTTP/1.1 200" in sent_b
            a_internal = [
                w.gms_a.address,
                "{}:{}".format(*w.a.addresses["internal"]),
                "{}:{}".format(*w.a.addresses["client"]),
                str(w.gms_a.port),
                str(w.a.addresses["internal"][1]),
            ]
            for marker in a_internal:
                assert marker.encode() not in sent_a, marker
            for marker in (w.gms_b.address, str(w.gms_b.port), "secret-backend", "internal-framework"):
                assert marker.encode() not in sent_b, marker
            assert b"aiohttp" not in sent_a + sent_b
            assert b"Python" not in sent_a + sent_b

    run(scenario())


def test_certificate_dates_are_current(pki: Pki) -> None:
    """Guard: the module PKI is valid now (a clock jump would make every TLS test fail opaquely)."""
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(pki.proxy_a.cert.read_bytes())
    now = datetime.datetime.now(datetime.UTC)
    assert cert.not_valid_before_utc <= now <= cert.not_valid_after_utc
