"""The KMS service over real loopback sockets and real mutual TLS (TS 33.180 Annex D, WA-CR-06).

A temporary PKI (``deploy.pki``) gives the KMS its server certificate and the clients theirs:
Alice's carries ``sip:alice@a.mc.example`` as subjectAltName URI, which is the identity the KMS
provisions for.  ``curl`` plays a real third-party client.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import ssl
import time
from collections.abc import AsyncIterable, AsyncIterator, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from curl_helpers import CurlAnswer, curl, needs_curl
from mcinterconnect.crypto.kms import Kms, KmsCertificate, KmsError, KmsResponse
from mcinterconnect.deploy.config import load_deployment
from mcinterconnect.deploy.init import init_deployment
from mcinterconnect.deploy.pki import (
    create_ca,
    issue_certificate,
    load_certificate,
    load_private_key,
    write_pem,
    write_private_key,
)
from mcinterconnect.deploy.runner import start_system
from mcinterconnect.services.kms import (
    INIT_PATH,
    KEYPROV_PATH,
    KmsClientError,
    KmsService,
    fetch_cert_cache,
    fetch_certificate,
    fetch_key_sets,
    read_certificate,
)
from mcinterconnect.tlsprofile import client_context, server_context
from pki_helpers import Identity
from system_helpers import run as run_bounded

ALICE = "sip:alice@a.mc.example"
BOB = "sip:bob@a.mc.example"
KMS_HOST = "kms.a.mc.example"
DEADLINE = 20.0
LIMIT = 1024


#: Every scenario on a fresh event loop, bounded in time (``system_helpers.run``).
run = functools.partial(run_bounded, deadline=DEADLINE)


@dataclass(frozen=True)
class Pki:
    ca: Path
    server: Identity
    clients: dict[str, Identity]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca_cert, ca_key = create_ca("MC system A CA", days=2)
    other_cert, other_key = create_ca("Another CA", days=2)
    write_pem(directory / "ca.crt", ca_cert)

    def issue(
        name: str, dns: list[str], uris: list[str], *, server: bool = False, foreign: bool = False
    ) -> Identity:
        cert, key = issue_certificate(
            other_cert if foreign else ca_cert,
            other_key if foreign else ca_key,
            dns,
            uris=uris,
            common_name=name,
            days=1,
            server=server,
            client=not server,
        )
        identity = Identity(directory / f"{name}.crt", directory / f"{name}.key")
        write_pem(identity.cert, cert)
        write_private_key(identity.key, key)
        return identity

    server = issue("kms", [KMS_HOST], [], server=True)
    clients = {
        "alice": issue("alice", [], [ALICE]),
        "bob": issue("bob", [], [BOB]),
        "partner-user": issue("mallory", [], ["sip:mallory@b.mc.example"]),
        "no-uri": issue("device", ["device.a.mc.example"], []),
        "web-uri": issue("web", [], ["https://a.mc.example/alice"]),
        "two-uris": issue("twice", [], [ALICE, BOB]),
        "foreign": issue("foreign-alice", [], [ALICE], foreign=True),
    }
    return Pki(directory / "ca.crt", server, clients)


@pytest.fixture(scope="module")
def kms() -> Kms:
    return Kms.create(KMS_HOST, issuer="MC system A")


@pytest.fixture(scope="module")
def partner_certificate() -> KmsCertificate:
    return Kms.create("kms.b.mc.example").certificate


def context(pki: Pki, who: str | None) -> ssl.SSLContext:
    if who is None:
        return client_context(trust_anchors=[pki.ca])
    identity = pki.clients[who]
    return client_context(trust_anchors=[pki.ca], cert_file=identity.cert, key_file=identity.key)


@dataclass
class Served:
    service: KmsService
    url: str
    events: list[dict[str, object]]

    @property
    def port(self) -> int:
        return self.service.address[1]


@contextlib.asynccontextmanager
async def serving(
    pki: Pki, kms: Kms, external: tuple[KmsCertificate, ...] = (), *, clock: Any = time.time
) -> AsyncIterator[Served]:
    events: list[dict[str, object]] = []
    service = KmsService(
        kms,
        domains=["a.mc.example"],
        external_certificates=external,
        max_request_bytes=LIMIT,
        log=events.append,
        clock=clock,
    )
    tls = server_context(pki.server.cert, pki.server.key, trust_anchors=[pki.ca], require_client_cert=True)
    await service.start("127.0.0.1", 0, tls)
    try:
        yield Served(service, f"https://127.0.0.1:{service.address[1]}", events)
    finally:
        await service.close()


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    headers: dict[str, str]
    body: bytes


async def request(
    served: Served,
    tls: ssl.SSLContext,
    path: str,
    *,
    method: str = "POST",
    data: bytes | AsyncIterable[bytes] = b"",
    params: dict[str, str] | None = None,
) -> Answer:
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method, served.url + path, data=data, ssl=tls, server_hostname=KMS_HOST, params=params
        ) as response,
    ):
        return Answer(response.status, response.content_type, dict(response.headers), await response.read())


def fetch(served: Served, tls: ssl.SSLContext, **arguments: Any) -> Coroutine[Any, Any, Any]:
    return fetch_key_sets(served.url, tls, server_hostname=KMS_HOST, **arguments)


# --- the three endpoints ------------------------------------------------------------------------


def test_init_keyprov_and_certcache_for_alice(
    pki: Pki, kms: Kms, partner_certificate: KmsCertificate
) -> None:
    async def scenario() -> None:
        async with serving(pki, kms, (partner_certificate,)) as served:
            tls = context(pki, "alice")
            certificate = await fetch_certificate(served.url, tls, server_hostname=KMS_HOST)
            assert certificate == kms.certificate
            key_sets = await fetch(served, tls, user_uri=ALICE, certificate=certificate)
            assert [ks.key_period_no for ks in key_sets] == list(kms.periods_around_now())
            assert {ks.user_uri for ks in key_sets} == {ALICE}
            # without the certificate, the client fetches it first
            assert len(await fetch(served, tls, user_uri=ALICE)) == 3
            cache = await fetch_cert_cache(served.url, tls, server_hostname=KMS_HOST)
            assert cache == [partner_certificate.as_role("External")]
            answer = await request(served, tls, INIT_PATH)
            assert answer.status == 200 and answer.content_type == "application/xml"
            assert answer.headers["Server"] == "kms"
            response = KmsResponse.from_xml(answer.body)
            assert response.kind == "init" and response.user_uri == ALICE
            assert response.client_req_url == f"https://{KMS_HOST}{INIT_PATH}"
            # one JSON event a request, with its reason code; never a key
            assert [event["reason"] for event in served.events] == ["allowed"] * 6
            assert {event["identity"] for event in served.events} == {ALICE}
            logged = json.dumps(served.events)
            assert f"{key_sets[0].ssk:064x}" not in logged and str(key_sets[0].ssk) not in logged

    run(scenario())


def test_requested_periods(pki: Pki, kms: Kms) -> None:
    current = kms.periods_around_now()[1]

    async def scenario() -> None:
        async with serving(pki, kms) as served:
            tls = context(pki, "alice")
            key_sets = await fetch(served, tls, user_uri=ALICE, periods=[current, current + 2])
            assert [ks.key_period_no for ks in key_sets] == [current, current + 2]
            for value, reason in (
                ("x", "periods-invalid"),
                (f"{current},", "periods-invalid"),
                (f"-{current}", "periods-invalid"),
                (",".join(str(current) for _ in range(5)), "too-many-periods"),
                (str(current + 3), "period-out-of-range"),
                (str(current - 2), "period-out-of-range"),
            ):
                answer = await request(served, tls, KEYPROV_PATH, params={"periods": value})
                assert (answer.status, answer.body) == (400, f"{reason}\n".encode()), value
            with pytest.raises(KmsClientError) as info:
                await fetch(served, tls, user_uri=ALICE, periods=[current + 5])
            assert info.value.reason == "http-status"
            assert str(info.value) == f"the KMS refused {KEYPROV_PATH}: 400 (period-out-of-range)"

    run(scenario())


def test_keyprov_serves_only_the_authenticated_identity(pki: Pki, kms: Kms) -> None:
    async def scenario() -> None:
        async with serving(pki, kms) as served:
            bob = context(pki, "bob")
            answer = await request(served, bob, KEYPROV_PATH)
            response = KmsResponse.from_xml(answer.body)
            assert response.user_uri == BOB
            assert {ks.user_uri for ks in response.key_sets} == {BOB}
            # naming someone else in the path is refused
            alice_path = f"{KEYPROV_PATH}/sip%3Aalice%40a.mc.example"
            answer = await request(served, bob, alice_path)
            assert (answer.status, answer.body) == (403, b"identity-mismatch\n")
            answer = await request(served, context(pki, "alice"), alice_path)
            assert answer.status == 200
            assert {ks.user_uri for ks in KmsResponse.from_xml(answer.body).key_sets} == {ALICE}
            # a client that asks for Alice's keys with Bob's certificate gets Bob's, and refuses them
            with pytest.raises(KmsClientError) as info:
                await fetch(served, bob, user_uri=ALICE)
            assert info.value.reason == "response-unexpected"

    run(scenario())


@pytest.mark.parametrize(
    ("who", "reason"),
    [
        ("partner-user", "identity-not-local"),
        ("no-uri", "identity-missing"),
        ("web-uri", "identity-missing"),
        ("two-uris", "identity-ambiguous"),
    ],
)
def test_identity_refusals(pki: Pki, kms: Kms, who: str, reason: str) -> None:
    async def scenario() -> None:
        async with serving(pki, kms) as served:
            for path in (INIT_PATH, KEYPROV_PATH):
                answer = await request(served, context(pki, who), path)
                assert (answer.status, answer.content_type, answer.body) == (
                    403,
                    "text/plain",
                    f"{reason}\n".encode(),
                )
            assert [event["reason"] for event in served.events] == [reason, reason]
            assert served.events[0]["decision"] == "refuse"

    run(scenario())


# --- TLS: no certificate, a certificate of another CA ---------------------------------------------


@pytest.mark.parametrize("who", [None, "foreign"])
def test_clients_without_a_certificate_of_the_own_ca_are_refused_in_the_handshake(
    pki: Pki, kms: Kms, who: str | None
) -> None:
    async def scenario() -> None:
        async with serving(pki, kms) as served:
            with pytest.raises(KmsClientError) as info:
                await fetch_certificate(served.url, context(pki, who), server_hostname=KMS_HOST)
            assert info.value.reason == "transport"
            # a raw TLS client: the server aborts the handshake, no HTTP request is ever seen
            with contextlib.suppress(ssl.SSLError, ConnectionError):
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", served.port, ssl=context(pki, who), server_hostname=KMS_HOST
                )
                try:
                    writer.write(
                        b"POST " + INIT_PATH.encode() + b" HTTP/1.1\r\nHost: kms\r\nContent-Length: 0\r\n\r\n"
                    )
                    await writer.drain()
                    assert await reader.read() == b""
                finally:
                    writer.close()
                    with contextlib.suppress(ssl.SSLError, ConnectionError):
                        await writer.wait_closed()
            assert served.events == []

    run(scenario())


def test_a_forged_kms_is_caught_by_the_client(pki: Pki, kms: Kms) -> None:
    """Same TLS identity, same KMS URI, other secrets: the key sets do not validate (WA-CR-06)."""
    impostor = Kms.create(KMS_HOST)

    async def scenario() -> None:
        async with serving(pki, impostor) as served:
            with pytest.raises(KmsError) as info:
                await fetch(served, context(pki, "alice"), user_uri=ALICE, certificate=kms.certificate)
            assert info.value.reason == "ssk-invalid"

    run(scenario())


# --- HTTP robustness -------------------------------------------------------------------------------


def test_oversize_bodies_are_refused(pki: Pki, kms: Kms) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"x" * 400

    async def scenario() -> None:
        async with serving(pki, kms) as served:
            tls = context(pki, "alice")
            assert (await request(served, tls, INIT_PATH, data=b"x" * LIMIT)).status == 200
            answer = await request(served, tls, INIT_PATH, data=b"x" * (LIMIT + 1))
            assert (answer.status, answer.body) == (413, b"body-too-large\n")
            answer = await request(served, tls, KEYPROV_PATH, data=chunks())  # chunked: no Content-Length
            assert (answer.status, answer.body) == (413, b"body-too-large\n")

    run(scenario())


def test_errors_are_a_status_and_a_reason_code(pki: Pki, kms: Kms) -> None:
    async def scenario() -> None:
        async with serving(pki, kms) as served:
            tls = context(pki, "alice")
            for method, path, status, reason in (
                ("GET", INIT_PATH, 405, "method-not-allowed"),
                ("PUT", KEYPROV_PATH, 405, "method-not-allowed"),
                ("POST", "/keymanagement/identity/v1/nothing", 404, "not-found"),
                ("POST", "/", 404, "not-found"),
            ):
                answer = await request(served, tls, path, method=method)
                assert (answer.status, answer.body) == (status, f"{reason}\n".encode())
                shown = json.dumps(answer.headers) + answer.body.decode()
                for leak in ("aiohttp", "Python", "Traceback", "127.0.0.1"):
                    assert leak not in shown
            assert (await request(served, tls, INIT_PATH, method="GET")).headers["Allow"] == "POST"

    run(scenario())


@pytest.mark.parametrize(
    "raw",
    [
        b"GARBAGE / HTTP/1.1\r\nHost: kms\r\n\r\n",
        b"POST " + INIT_PATH.encode() + b" HTTP/1.1\r\nHost: kms\r\nContent-Length: abc\r\n\r\n",
        b"POST " + INIT_PATH.encode() + b" HTTP/1.1\r\nHost: kms\r\nX: " + b"y" * 9000 + b"\r\n\r\n",
    ],
)
def test_malformed_requests_get_a_reason_code_only(pki: Pki, kms: Kms, raw: bytes) -> None:
    async def scenario() -> None:
        async with serving(pki, kms) as served:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", served.port, ssl=context(pki, "alice"), server_hostname=KMS_HOST
            )
            try:
                writer.write(raw)
                await writer.drain()
                answer = await reader.read()
            finally:
                writer.close()
                with contextlib.suppress(ssl.SSLError, ConnectionError):
                    await writer.wait_closed()
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.") and b" 400 " in head.split(b"\r\n")[0]
            assert b"\r\nServer: kms" in head
            assert body == b"bad-request\n"
            for leak in (b"aiohttp", b"Python", b"GARBAGE", b"abc", b"yyyy"):
                assert leak not in answer

    run(scenario())


def test_a_failure_inside_the_kms_is_an_internal_error_without_details(pki: Pki, kms: Kms) -> None:
    def broken_clock() -> float:
        raise RuntimeError("/secret/path/kms.py line 12")

    async def scenario() -> None:
        async with serving(pki, kms, clock=broken_clock) as served:
            answer = await request(served, context(pki, "alice"), INIT_PATH)
            assert (answer.status, answer.body) == (500, b"internal-error\n")
            assert {"event": "kms-internal-error", "error": "RuntimeError"} in served.events

    run(scenario())


# --- curl as a third-party client --------------------------------------------------------------


@needs_curl
def test_curl_gets_the_kms_init_document_only_with_a_client_certificate(pki: Pki, kms: Kms) -> None:
    alice = pki.clients["alice"]

    async def post_init(served: Served, *extra: str) -> CurlAnswer:
        return await curl(KMS_HOST, served.port, INIT_PATH, pki.ca, "--data-binary", "", *extra, timeout=10)

    async def scenario() -> None:
        async with serving(pki, kms) as served:
            answer = await post_init(served, "--cert", str(alice.cert), "--key", str(alice.key))
            assert answer.exit_code == 0, answer
            assert (answer.status, answer.content_type) == (200, "application/xml")
            response = KmsResponse.from_xml(answer.body)
            assert response.kind == "init" and response.user_uri == ALICE
            assert response.certificates == (kms.certificate,)
            answer = await post_init(served)
            assert answer.exit_code != 0
            assert b"KmsResponse" not in answer.body

    run(scenario())


# --- the KMS runs with its system --------------------------------------------------------------


def test_start_system_runs_the_kms_with_the_partner_certificate(tmp_path: Path) -> None:
    deployment = load_deployment(init_deployment(tmp_path / "deployment"))
    a, b = deployment.systems
    assert a.kms is not None and b.kms is not None
    folder = a.source.parent
    cert, key = issue_certificate(
        load_certificate(folder / "pki" / "ca.crt"),
        load_private_key(folder / "pki" / "ca.key"),
        [],
        uris=[ALICE],
        common_name="alice",
        days=1,
        server=False,
    )
    write_pem(tmp_path / "alice.crt", cert)
    write_private_key(tmp_path / "alice.key", key)
    tls = client_context(
        trust_anchors=[folder / "pki" / "ca.crt"],
        cert_file=tmp_path / "alice.crt",
        key_file=tmp_path / "alice.key",
    )
    listen = a.kms.listen
    url = f"https://{listen.host}:{listen.port}"

    async def scenario() -> None:
        system = await start_system(a)
        try:
            assert system.kms is not None
            key_sets = await fetch_key_sets(url, tls, user_uri=ALICE, server_hostname=a.kms.uri)
            assert len(key_sets) == 3
            cache = await fetch_cert_cache(url, tls, server_hostname=a.kms.uri)
            own_b = read_certificate(b.source.parent / "kms" / "kms-cert.xml")
            assert cache == [own_b.as_role("External")]
        finally:
            await system.close()
        with pytest.raises(OSError):
            await asyncio.open_connection(listen.host, listen.port)

    run(scenario())
