"""Partner groups across two systems (TS 33.180 11.1.1, 5.7; WA-IC-12/21/22), over real loopback sockets.

GMS A and GMS B run as real aiohttp servers started by ``start_gms_service``; each fetches its
own key sets from its own KMS (a real ``KmsService`` over mutual TLS, GMS client certificate with
subjectAltName URI = its PSI).  Alice's keys are provisioned directly from KMS A.

The HTTP proxies are being written concurrently, so two tiny real aiohttp forwarders stand in
for them here (the end-to-end test through the real proxies comes separately):

* ``Relay`` plays HTTP proxy A's internal listener and HTTP proxy B's entry at once: it requires
  ``Host`` = B's domain, verifies the ``MC-EAR`` (``check_ear`` under A's KMS certificate, Target
  ID = GMS B's PSI, Target Role GMS, Request type GROUP), and forwards the request to GMS B
  keeping ``X-3GPP-Asserted-Identity`` (and ``If-None-Match``); it records every exchange, and
  can replace the GMK answers (forgeries);
* ``ClientProxy`` plays HTTP proxy A's client side: HTTPS with client certificates of A's CA,
  it forwards to GMS A with ``X-3GPP-Asserted-Identity`` = the certificate's SAN URI.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from mcinterconnect.border.agreement import PartnerAgreement
from mcinterconnect.border.audit import AuditLog
from mcinterconnect.crypto.kms import Kms
from mcinterconnect.deploy.pki import create_ca, issue_certificate, write_pem, write_private_key
from mcinterconnect.protect.ear import EAR_HEADER, RequestType, Role
from mcinterconnect.protect.ear_check import EarPolicy, check_ear
from mcinterconnect.services.gmk import GmkError, GroupKey, wrap_gmk
from mcinterconnect.services.gms import (
    ASSERTED_IDENTITY_HEADER,
    GMK_PATH,
    GROUP_CONTENT_TYPE,
    GmsService,
    GmsSettings,
    GroupFileError,
    gmk_path,
    group_path,
    start_gms_service,
)
from mcinterconnect.services.gms_client import GmsClientError, fetch_gmk, fetch_group
from mcinterconnect.services.groupdoc import GroupDocument, GroupMember, PartnerVisibility
from mcinterconnect.services.kms import (
    KmsRequestError,
    KmsService,
    authenticated_identity,
    write_certificate,
)
from mcinterconnect.services.mcx_ear import SigningKeys
from mcinterconnect.sip.transport import Address
from mcinterconnect.tlsprofile import client_context, peer_certificate, server_context
from system_helpers import run as run_bounded

DEADLINE = 30.0
A, B = "a.mc.example", "b.mc.example"
GMS_A, GMS_B = f"sip:gms@{A}", f"sip:gms@{B}"
ALICE, CAROL, BOB_A = f"sip:alice@{A}", f"sip:carol@{A}", f"sip:bob@{A}"
FIRE_ID, SECRET_ID, POLICE_ID = f"sip:fire@{B}", f"sip:secret@{B}", f"sip:police@{A}"
CLIENT_PROXY_HOST = "hp.a.mc.example"

FIRE = GroupDocument(
    group_id=FIRE_ID,
    display_name="Fire brigade",
    members=(
        GroupMember(ALICE, role="dispatcher", priority=5),
        GroupMember(f"sip:bob@{B}"),
        GroupMember("sip:dave@c.mc.example"),
    ),
    services=("mcptt",),
    visibility=(
        PartnerVisibility(A, reveal_members=True, reveal_attributes=True),
        PartnerVisibility("c.mc.example", reveal_members=True),
    ),
)
#: A B-homed group A may not see (no rule for a.mc.example): 404 to A, document and GMK alike.
SECRET = GroupDocument(
    group_id=SECRET_ID,
    members=(GroupMember(f"sip:erin@{A}"), GroupMember(f"sip:bob@{B}")),
    visibility=(PartnerVisibility("c.mc.example", reveal_members=True),),
)
POLICE = GroupDocument(group_id=POLICE_ID, members=(GroupMember(ALICE),))


#: Every scenario on a fresh event loop, bounded in time (``system_helpers.run``).
run = functools.partial(run_bounded, deadline=DEADLINE)


async def until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


# --- key material and PKI ------------------------------------------------------------------------


@dataclass(frozen=True)
class System:
    domain: str
    kms: Kms
    ca: Path
    kms_tls: tuple[Path, Path]
    gms_tls: tuple[Path, Path]
    kms_certificate: Path
    groups: Path


@dataclass(frozen=True)
class Pki:
    a: System
    b: System
    client_proxy: tuple[Path, Path]
    alice: tuple[Path, Path]


def _system(directory: Path, domain: str, documents: list[GroupDocument]) -> System:
    directory.mkdir()
    ca_cert, ca_key = create_ca(f"MC system {domain} CA", days=2)
    write_pem(directory / "ca.crt", ca_cert)

    def issue(name: str, dns: list[str], uris: list[str], *, server: bool) -> tuple[Path, Path]:
        cert, key = issue_certificate(
            ca_cert, ca_key, dns, uris=uris, common_name=name, days=1, server=server, client=not server
        )
        write_pem(directory / f"{name}.crt", cert)
        write_private_key(directory / f"{name}.key", key)
        return directory / f"{name}.crt", directory / f"{name}.key"

    kms = Kms.create(f"kms.{domain}", issuer=f"MC system {domain}")
    write_certificate(directory / "kms-certificate.xml", kms.certificate)
    groups = directory / "groups"
    groups.mkdir()
    for number, document in enumerate(documents):
        (groups / f"group-{number}.xml").write_bytes(document.to_xml())
    return System(
        domain=domain,
        kms=kms,
        ca=directory / "ca.crt",
        kms_tls=issue("kms", [f"kms.{domain}"], [], server=True),
        gms_tls=issue("gms", [], [f"sip:gms@{domain}"], server=False),
        kms_certificate=directory / "kms-certificate.xml",
        groups=groups,
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("gmssync")
    a = _system(directory / "a", A, [POLICE])
    b = _system(directory / "b", B, [FIRE, SECRET])
    ca_cert, ca_key = create_ca("MC system a clients", days=2)  # A's CA for the client side
    write_pem(directory / "clients-ca.crt", ca_cert)
    paths = {}
    for name, dns, uris, server in (
        ("client-proxy", [CLIENT_PROXY_HOST], [], True),
        ("alice", [], [ALICE], False),
    ):
        cert, key = issue_certificate(
            ca_cert, ca_key, dns, uris=uris, common_name=name, days=1, server=server, client=not server
        )
        write_pem(directory / f"{name}.crt", cert)
        write_private_key(directory / f"{name}.key", key)
        paths[name] = (directory / f"{name}.crt", directory / f"{name}.key")
    return Pki(a, b, paths["client-proxy"], paths["alice"])


def _agreement(peer: System, own_ca: Path) -> PartnerAgreement:
    return PartnerAgreement(
        name=f"system-{peer.domain[0]}",
        domains=[peer.domain],
        is_proxy_host=f"isp.{peer.domain}",
        is_proxy_address="tls://127.0.0.1:5061",
        trust_anchors=[own_ca],
        psis={"gms": f"sip:gms@{peer.domain}"},
        kms_certificate=peer.kms_certificate,
        authentication="explicit",
    )


def keys_of(kms: Kms, uri: str) -> SigningKeys:
    keys = SigningKeys(kms.certificate, uri)
    keys.add(kms.provision(uri, kms.periods_around_now()))
    return keys


# --- the stand-in HTTP proxies ---------------------------------------------------------------------


@dataclass
class Exchange:
    path: str
    identity: str | None
    if_none_match: str | None
    ear: str
    status: int


@dataclass
class Relay:
    """HTTP proxy A (internal) + HTTP proxy B (entry) in one forwarder (module docstring)."""

    gms_b: str
    certificate_a: Kms
    seen: list[Exchange] = field(default_factory=list)
    replace_gmk: Callable[[bytes], bytes] | None = None

    async def handle(self, request: web.Request) -> web.Response:
        if request.headers.get("Host") != B:
            return web.Response(status=421, text="unknown-partner\n")
        certificate = self.certificate_a.certificate
        verdict = check_ear(
            request.headers.get(EAR_HEADER),
            now=time.time(),
            policy=EarPolicy(),
            source_domains=[A],
            target_domains=[B],
            target_id=GMS_B,
            target_roles=(Role.GMS,),
            allowed_request_types=lambda kind: kind == RequestType.GROUP,
            kms_uri=certificate.kms_uri,
            kpak=certificate.pub_auth_key,
            key_period=certificate.key_period,
        )
        identity = request.headers.get(ASSERTED_IDENTITY_HEADER)
        if_none_match = request.headers.get("If-None-Match")
        if not verdict.ok:
            self.seen.append(Exchange(request.path, identity, if_none_match, verdict.reason, 403))
            return web.Response(status=403, text=f"{verdict.reason}\n")
        headers = {ASSERTED_IDENTITY_HEADER: identity} if identity is not None else {}
        if if_none_match is not None:
            headers["If-None-Match"] = if_none_match
        async with (
            aiohttp.ClientSession() as session,
            session.get(self.gms_b + request.rel_url.raw_path, headers=headers) as answer,
        ):
            body = await answer.read()
            status, content_type, etag = (
                answer.status,
                answer.headers.get("Content-Type"),
                answer.headers.get("ETag"),
            )
        self.seen.append(Exchange(request.path, identity, if_none_match, verdict.reason, status))
        if self.replace_gmk is not None and request.path.startswith(GMK_PATH) and status == 200:
            body = self.replace_gmk(body)
        response = web.Response(status=status, body=None if status == 304 else body)
        if content_type is not None and status != 304:
            response.headers["Content-Type"] = content_type
        if etag is not None:
            response.headers["ETag"] = etag
        return response


async def client_proxy_handler(gms_a: str, request: web.Request) -> web.Response:
    """HTTP proxy A's client side: the identity is the client certificate's SAN URI."""
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport is not None else None
    try:
        identity = authenticated_identity(peer_certificate(ssl_object), [A])
    except KmsRequestError as refusal:
        return web.Response(status=403, text=f"{refusal.reason}\n")
    headers = {ASSERTED_IDENTITY_HEADER: identity}
    if "If-None-Match" in request.headers:
        headers["If-None-Match"] = request.headers["If-None-Match"]
    async with (
        aiohttp.ClientSession() as session,
        session.get(gms_a + request.rel_url.raw_path, headers=headers) as answer,
    ):
        body = await answer.read()
        response = web.Response(status=answer.status, body=None if answer.status == 304 else body)
        for name in ("Content-Type", "ETag"):
            if name in answer.headers and not (answer.status == 304 and name == "Content-Type"):
                response.headers[name] = answer.headers[name]
        return response


async def _serve(app: web.Application, context: ssl.SSLContext | None = None) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    return runner, int(runner.addresses[0][1])


# --- the two systems -------------------------------------------------------------------------------


@dataclass
class World:
    gms_a: GmsService
    gms_b: GmsService
    relay: Relay
    audit_a: AuditLog
    events_a: list[dict[str, object]]
    events_b: list[dict[str, object]]
    client_base: str
    alice_context: ssl.SSLContext
    alice_keys: SigningKeys
    pki: Pki

    @property
    def b_url(self) -> str:
        return f"http://127.0.0.1:{self.gms_b.address[1]}"

    @property
    def a_url(self) -> str:
        return f"http://127.0.0.1:{self.gms_a.address[1]}"

    async def alice_gmk(self, group_id: str) -> bytes:
        received = await fetch_gmk(
            self.client_base,
            group_id,
            user_uri=ALICE,
            keys=self.alice_keys,
            gms_psi=GMS_A,
            ssl_context=self.alice_context,
            server_hostname=CLIENT_PROXY_HOST,
        )
        return received.gmk


async def _kms_service(system: System) -> tuple[KmsService, str]:
    service = KmsService(system.kms, domains=[system.domain])
    context = server_context(*system.kms_tls, trust_anchors=[system.ca], require_client_cert=True)
    await service.start("127.0.0.1", 0, context)
    return service, f"https://127.0.0.1:{service.address[1]}"


@contextlib.asynccontextmanager
async def world(pki: Pki, *, poll_interval: float = 3600.0) -> AsyncIterator[World]:
    closers: list[Callable[[], Coroutine[Any, Any, None]]] = []
    try:
        kms_a, url_a = await _kms_service(pki.a)
        closers.append(kms_a.close)
        kms_b, url_b = await _kms_service(pki.b)
        closers.append(kms_b.close)
        events_a: list[dict[str, object]] = []
        events_b: list[dict[str, object]] = []
        audit_a = AuditLog(None, system="a", component="gms")
        gms_b = await start_gms_service(
            GmsSettings(
                listen="127.0.0.1:0",
                psi=GMS_B,
                groups=pki.b.groups,
                certificate=pki.b.gms_tls[0],
                private_key=pki.b.gms_tls[1],
                kms_trust_anchors=[pki.b.ca],
            ),
            domains=[B],
            partners=[_agreement(pki.a, pki.b.ca)],
            kms_certificate=pki.b.kms.certificate,
            kms_url=url_b,
            kms_server_hostname=f"kms.{B}",
            http_proxy=None,
            audit=AuditLog(None, system="b", component="gms"),
            log=events_b.append,
        )
        closers.append(gms_b.close)
        relay = Relay(f"http://127.0.0.1:{gms_b.address[1]}", pki.a.kms)
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", relay.handle)
        relay_runner, relay_port = await _serve(app)
        closers.append(relay_runner.cleanup)
        gms_a = await start_gms_service(
            GmsSettings(
                listen="127.0.0.1:0",
                psi=GMS_A,
                groups=pki.a.groups,
                certificate=pki.a.gms_tls[0],
                private_key=pki.a.gms_tls[1],
                kms_trust_anchors=[pki.a.ca],
                partner_groups=[FIRE_ID, SECRET_ID],
                poll_interval=poll_interval,
            ),
            domains=[A],
            partners=[_agreement(pki.b, pki.a.ca)],
            kms_certificate=pki.a.kms.certificate,
            kms_url=url_a,
            kms_server_hostname=f"kms.{A}",
            http_proxy=Address.parse(f"tcp://127.0.0.1:{relay_port}"),
            audit=audit_a,
            log=events_a.append,
        )
        closers.append(gms_a.close)
        assert gms_a.keys is not None and gms_b.keys is not None  # fetched from the KMSs over mTLS
        gms_a_url = f"http://127.0.0.1:{gms_a.address[1]}"
        client_app = web.Application()

        async def forward(request: web.Request) -> web.Response:
            return await client_proxy_handler(gms_a_url, request)

        client_app.router.add_route("GET", "/{tail:.*}", forward)
        client_ca = pki.alice[0].parent / "clients-ca.crt"
        context = server_context(*pki.client_proxy, trust_anchors=[client_ca], require_client_cert=True)
        client_runner, client_port = await _serve(client_app, context)
        closers.append(client_runner.cleanup)
        yield World(
            gms_a=gms_a,
            gms_b=gms_b,
            relay=relay,
            audit_a=audit_a,
            events_a=events_a,
            events_b=events_b,
            client_base=f"https://127.0.0.1:{client_port}",
            alice_context=client_context(
                trust_anchors=[client_ca], cert_file=pki.alice[0], key_file=pki.alice[1]
            ),
            alice_keys=keys_of(pki.a.kms, ALICE),
            pki=pki,
        )
    finally:
        for close in reversed(closers):
            await close()


def held_key(world: World, group_id: str) -> GroupKey | None:
    group = world.gms_a.partner_groups.get(group_id)
    return None if group is None else group.key


async def first_poll(world: World) -> None:
    await until(lambda: held_key(world, FIRE_ID) is not None, "the first GMK of the fire group at GMS A")


async def put_at_b(http: aiohttp.ClientSession, world: World, document: GroupDocument) -> None:
    """Change a group document at GMS B, as B's own operator would."""
    async with http.put(
        world.b_url + group_path(document.group_id),
        data=document.to_xml(),
        headers={"Content-Type": GROUP_CONTENT_TYPE},
    ) as answer:
        assert answer.status == 200


def refusals(world: World) -> list[dict[str, object]]:
    return [entry for entry in world.audit_a.recent if entry["decision"] == "refuse"]


# --- tests -------------------------------------------------------------------------------------------


def test_partner_group_filtered_served_and_gmk_relayed(pki: Pki) -> None:
    async def scenario() -> None:
        async with world(pki) as w:
            await first_poll(w)
            kept = w.gms_a.partner_groups.get(FIRE_ID)
            assert kept is not None
            # Only A-homed members reached A (B filtered, WA-IC-12); no visibility rules either.
            assert kept.document.members == (FIRE.members[0],)
            assert kept.document.display_name == "Fire brigade" and kept.document.visibility == ()
            # Alice reads it through her HTTP proxy (client certificate = her identity).
            fetched = await fetch_group(
                w.client_base, FIRE_ID, ssl_context=w.alice_context, server_hostname=CLIENT_PROXY_HOST
            )
            assert fetched.status == 200 and fetched.document == kept.document
            assert b"bob" not in fetched.document.to_xml() and b"dave" not in fetched.document.to_xml()
            again = await fetch_group(
                w.client_base,
                FIRE_ID,
                ssl_context=w.alice_context,
                server_hostname=CLIENT_PROXY_HOST,
                etag=fetched.etag,
            )
            assert again.status == 304
            # The GMK chain B -> A -> alice: the same 16 octets and GMK-ID everywhere.
            at_b = w.gms_b.group_keys.get(FIRE_ID)
            assert at_b is not None and kept.key is not None
            assert (kept.key.gmk, kept.key.gmk_id) == (at_b.gmk, at_b.gmk_id)
            assert await w.alice_gmk(FIRE_ID) == at_b.gmk
            received = await fetch_gmk(
                w.client_base,
                POLICE_ID,
                user_uri=ALICE,
                keys=w.alice_keys,
                gms_psi=GMS_A,
                ssl_context=w.alice_context,
                server_hostname=CLIENT_PROXY_HOST,
            )
            police = w.gms_a.group_keys.get(POLICE_ID)
            assert police is not None and received.gmk == police.gmk and received.gmk_id == police.gmk_id
            # GMS B never saw alice: only GMS A's PSI crossed, every request with a valid EAR.
            identities = {
                event.get("identity") for event in w.events_b if event.get("event") == "gms-request"
            }
            assert identities == {GMS_A}
            assert all(exchange.identity == GMS_A and exchange.ear == "ear-ok" for exchange in w.relay.seen)
            assert not any(ALICE in repr(event) for event in w.events_b)
            # The group A may not see: 404 for the document, nothing kept, one audit line.
            assert w.gms_a.partner_groups.get(SECRET_ID) is None
            [secret] = [entry for entry in refusals(w) if entry.get("group") == SECRET_ID]
            assert secret["reason"] == "http-status" and "404" in str(secret["detail"])
            assert secret["component"] == "gms"

    run(scenario())


def test_access_rules_at_both_gmss(pki: Pki) -> None:
    async def scenario() -> None:
        async with world(pki) as w, aiohttp.ClientSession() as http:
            await first_poll(w)

            async def get(base: str, path: str, identity: str | None) -> tuple[int, str]:
                headers = {ASSERTED_IDENTITY_HEADER: identity} if identity is not None else {}
                async with http.get(base + path, headers=headers) as answer:
                    text = await answer.text() if answer.content_type == "text/plain" else ""
                    return answer.status, text.strip()

            # At B: an external requester other than the partner's GMS PSI gets no GMK.
            assert await get(w.b_url, gmk_path(FIRE_ID), ALICE) == (403, "not-partner-gms")
            assert await get(w.b_url, gmk_path(FIRE_ID), "sip:gms@c.mc.example") == (403, "not-partner-gms")
            # A partner domain without visibility: 404 for the GMK and the document alike.
            assert await get(w.b_url, gmk_path(SECRET_ID), GMS_A) == (404, "not-found")
            assert await get(w.b_url, group_path(SECRET_ID), GMS_A) == (404, "not-found")
            assert await get(w.b_url, gmk_path("sip:none@b.mc.example"), GMS_A) == (404, "not-found")
            assert await get(w.b_url, gmk_path(FIRE_ID), None) == (403, "identity-missing")
            # At A: own users must be members; partner groups are read-only; never re-exported.
            assert await get(w.a_url, gmk_path(FIRE_ID), BOB_A) == (403, "not-a-member")
            assert await get(w.a_url, gmk_path(POLICE_ID), BOB_A) == (403, "not-a-member")
            assert await get(w.a_url, group_path(FIRE_ID), GMS_B) == (404, "not-found")
            assert await get(w.a_url, gmk_path(FIRE_ID), GMS_B) == (404, "not-found")
            async with http.put(
                w.a_url + group_path(FIRE_ID),
                data=FIRE.to_xml(),
                headers={"Content-Type": GROUP_CONTENT_TYPE},
            ) as answer:
                assert answer.status == 403 and (await answer.text()).strip() == "partner-group-read-only"
            async with http.delete(w.a_url + group_path(FIRE_ID)) as answer:
                assert answer.status == 403
            # Keys gone: 503, after the authorisation checks.
            keys, w.gms_a.keys = w.gms_a.keys, None
            assert await get(w.a_url, gmk_path(FIRE_ID), ALICE) == (503, "keys-unavailable")
            w.gms_a.keys = keys
            with pytest.raises(GmkError) as refused:
                await fetch_gmk(
                    w.client_base,
                    POLICE_ID,
                    user_uri=ALICE,
                    keys=w.alice_keys,
                    gms_psi=GMS_B,  # alice expects her GMS: another signer is refused
                    ssl_context=w.alice_context,
                    server_hostname=CLIENT_PROXY_HOST,
                    timeout=5,
                )
            assert refused.value.reason == "initiator-mismatch"
            # Bob has no client certificate of A's CA: the stand-in proxy refuses him before the GMS.
            with pytest.raises(GmsClientError) as failed:
                await fetch_group(w.client_base, FIRE_ID, ssl_context=ssl.create_default_context(), timeout=5)
            assert failed.value.reason == "transport"

    run(scenario())


def test_a_change_at_b_reaches_a_at_the_next_poll(pki: Pki) -> None:
    async def scenario() -> None:
        async with world(pki, poll_interval=0.2) as w, aiohttp.ClientSession() as http:
            await first_poll(w)
            kept = w.gms_a.partner_groups.get(FIRE_ID)
            assert kept is not None
            first_etag = kept.remote_etag
            # Unchanged: the next poll is conditional and B answers 304.
            await until(
                lambda: any(x.status == 304 and x.if_none_match == first_etag for x in w.relay.seen),
                "a 304 from GMS B",
            )
            assert any(e.get("status") == 304 for e in w.events_b)
            gmk_fetches = sum(1 for x in w.relay.seen if x.path.startswith(GMK_PATH))
            assert gmk_fetches == 1  # the GMK is not fetched again while nothing changes
            changed = replace(
                FIRE, display_name="Fire brigade (north)", members=(*FIRE.members, GroupMember(CAROL))
            )
            await put_at_b(http, w, changed)
            await until(
                lambda: (
                    (group := w.gms_a.partner_groups.get(FIRE_ID)) is not None
                    and group.remote_etag != first_etag
                    and not group.gmk_pending
                ),
                "the change at GMS A",
            )
            now = w.gms_a.partner_groups.get(FIRE_ID)
            assert now is not None and now.document.display_name == "Fire brigade (north)"
            assert {member.id for member in now.document.members} == {ALICE, CAROL}
            fetched = await fetch_group(
                w.client_base, FIRE_ID, ssl_context=w.alice_context, server_hostname=CLIENT_PROXY_HOST
            )
            assert fetched.document == now.document
            assert any(entry["reason"] == "partner-group-updated" for entry in w.audit_a.recent)

    run(scenario())


def test_forged_or_tampered_gmk_is_refused_and_the_previous_one_kept(pki: Pki) -> None:
    async def scenario() -> None:
        async with world(pki) as w, aiohttp.ClientSession() as http:
            await first_poll(w)
            previous = held_key(w, FIRE_ID)
            assert previous is not None

            async def change_at_b(name: str) -> None:
                await put_at_b(http, w, replace(FIRE, display_name=name))

            def flip(body: bytes) -> bytes:
                tampered = bytearray(body)
                tampered[len(body) // 2] ^= 0x01
                return bytes(tampered)

            # 1. Tampered on the way: the signature no longer verifies.
            w.relay.replace_gmk = flip
            await change_at_b("Fire brigade 2")
            outcome = await w.gms_a.poller.poll_once() if w.gms_a.poller is not None else {}
            assert outcome[FIRE_ID] == "gmk-signature-invalid"
            group = w.gms_a.partner_groups.get(FIRE_ID)
            assert group is not None and group.key == previous and group.gmk_pending
            assert group.document.display_name == "Fire brigade 2"  # the good document is kept
            assert await w.alice_gmk(FIRE_ID) == previous.gmk
            # 2. A genuine GMK of another identity of B's KMS (not GMS B): wrong initiator.
            kms_b = pki.b.kms
            mallory = "sip:mallory@b.mc.example"
            forged = wrap_gmk(
                GroupKey.new(FIRE_ID),
                receiver_uri=GMS_A,
                receiver_certificate=pki.a.kms.certificate,
                sender_uri=mallory,
                sender_keys=keys_of(kms_b, mallory),
            )
            w.relay.replace_gmk = lambda _body: forged
            assert w.gms_a.poller is not None
            outcome = await w.gms_a.poller.poll_once()  # still pending: fetched again
            assert outcome[FIRE_ID] == "gmk-initiator-mismatch"
            assert held_key(w, FIRE_ID) == previous
            lines = [entry for entry in refusals(w) if entry.get("group") == FIRE_ID]
            assert [entry["reason"] for entry in lines] == ["gmk-signature-invalid", "gmk-initiator-mismatch"]
            assert all(entry["component"] == "gms" and entry["partner"] == "system-b" for entry in lines)
            # 3. The relay behaves again: the next poll gets the GMK (unchanged at B).
            w.relay.replace_gmk = None
            outcome = await w.gms_a.poller.poll_once()
            assert outcome[FIRE_ID] == "gmk-received"
            group = w.gms_a.partner_groups.get(FIRE_ID)
            assert group is not None and not group.gmk_pending and group.key == previous

    run(scenario())


def test_bad_group_file_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "groups"
    folder.mkdir()
    (folder / "good.xml").write_bytes(POLICE.to_xml())
    (folder / "broken.xml").write_bytes(b"<group xmlns='urn:oma:xml:poc:list-service'><oops/></group>")

    async def scenario() -> None:
        await start_gms_service(
            GmsSettings(listen="127.0.0.1:0", psi=GMS_A, groups=folder),
            domains=[A],
            partners=[],
            kms_certificate=None,
            kms_url=None,
            kms_server_hostname=None,
            http_proxy=None,
            audit=AuditLog(None, system="a", component="gms"),
        )

    with pytest.raises(GroupFileError) as refused:
        run(scenario())
    assert str(refused.value).startswith(f"{folder / 'broken.xml'}: ") and "\n" not in str(refused.value)
    assert isinstance(refused.value, ValueError)


def test_without_keys_the_gmk_is_503_and_documents_still_served(pki: Pki) -> None:
    async def scenario() -> None:
        service = await start_gms_service(
            GmsSettings(listen="127.0.0.1:0", psi=GMS_A, groups=pki.a.groups),
            domains=[A],
            partners=[],
            kms_certificate=pki.a.kms.certificate,
            kms_url=None,
            kms_server_hostname=None,
            http_proxy=None,
            audit=AuditLog(None, system="a", component="gms"),
        )
        try:
            base = f"http://127.0.0.1:{service.address[1]}"
            async with aiohttp.ClientSession() as http:
                async with http.get(
                    base + gmk_path(POLICE_ID), headers={ASSERTED_IDENTITY_HEADER: ALICE}
                ) as r:
                    assert r.status == 503 and (await r.text()).strip() == "keys-unavailable"
                async with http.get(
                    base + group_path(POLICE_ID), headers={ASSERTED_IDENTITY_HEADER: ALICE}
                ) as r:
                    assert r.status == 200 and GroupDocument.from_xml(await r.read()) == POLICE
            assert service.group_keys.get(POLICE_ID) is not None  # created at load
        finally:
            await service.close()

    run(scenario())
