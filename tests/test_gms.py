"""The GMS over real loopback sockets: XCAP-style CRUD, ETags and preconditions, refusals, and the
minimum-disclosure view an external requester gets (WA-IC-12).  The aiohttp client and ``curl``
(a real third-party client) talk to it, over plain HTTP and over TLS.
"""

from __future__ import annotations

import functools
import json
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from curl_helpers import curl, needs_curl
from mcinterconnect.services.gms import (
    ASSERTED_IDENTITY_HEADER,
    GROUP_CONTENT_TYPE,
    XCAP_ERROR_CONTENT_TYPE,
    GmsService,
    MemoryGroupStore,
    group_path,
)
from mcinterconnect.services.groupdoc import GroupDocument, GroupMember, PartnerVisibility
from mcinterconnect.tlsprofile import client_context, server_context
from mcinterconnect.xmlsafe import parse_xml
from pki_helpers import Issued, make_ca, make_leaf
from system_helpers import run as run_bounded

DEADLINE = 10.0
GMS_HOST = "gms.b.mc.example"
LIMIT = 4096

FIRE = GroupDocument(
    group_id="sip:fire@b.mc.example",
    display_name="Fire brigade",
    members=(
        GroupMember("sip:alice@a.mc.example", role="dispatcher", priority=5),
        GroupMember("sip:bob@b.mc.example"),
        GroupMember("sip:dave@c.mc.example"),
    ),
    services=("mcptt",),
    visibility=(
        PartnerVisibility("a.mc.example", reveal_members=True, reveal_attributes=True),
        PartnerVisibility("c.mc.example", reveal_members=True, reveal_attributes=False),
    ),
)
PATH = group_path(FIRE.group_id)
PUT_HEADERS = {"Content-Type": GROUP_CONTENT_TYPE}


#: Every scenario on a fresh event loop, bounded in time (``system_helpers.run``).
run = functools.partial(run_bounded, deadline=DEADLINE)


@asynccontextmanager
async def serving(
    *, ssl_context: ssl.SSLContext | None = None, documents: tuple[GroupDocument, ...] = ()
) -> AsyncIterator[tuple[GmsService, str, list[dict[str, object]]]]:
    events: list[dict[str, object]] = []
    service = GmsService(
        domains=["b.mc.example"],
        store=MemoryGroupStore(documents),
        max_request_bytes=LIMIT,
        ssl_context=ssl_context,
        log=events.append,
    )
    await service.start("127.0.0.1", 0)
    try:
        scheme = "https" if ssl_context is not None else "http"
        yield service, f"{scheme}://127.0.0.1:{service.address[1]}", events
    finally:
        await service.close()


def assert_plain_refusal(status: int, body: str, reason: str) -> None:
    assert body == f"{reason}\n", (status, body)
    assert "Traceback" not in body and "mcinterconnect" not in body


def test_crud_with_etags() -> None:
    async def scenario() -> None:
        async with serving() as (_, base, events), aiohttp.ClientSession() as http:
            async with http.get(base + PATH) as response:
                assert response.status == 404
                assert_plain_refusal(response.status, await response.text(), "not-found")
            async with http.put(base + PATH, data=FIRE.to_xml(), headers=PUT_HEADERS) as response:
                assert response.status == 201
                assert response.headers["ETag"] == FIRE.etag
                assert response.headers["Server"] == "gms"
            async with http.get(base + PATH) as response:
                assert response.status == 200
                assert response.content_type == GROUP_CONTENT_TYPE
                assert response.headers["ETag"] == FIRE.etag
                assert GroupDocument.from_xml(await response.read()) == FIRE
            renamed = GroupDocument(FIRE.group_id, "Fire", FIRE.members, FIRE.services, FIRE.visibility)
            async with http.put(base + PATH, data=renamed.to_xml(), headers=PUT_HEADERS) as response:
                assert response.status == 200
                assert response.headers["ETag"] == renamed.etag != FIRE.etag
            async with http.delete(base + PATH) as response:
                assert response.status == 200
            async with http.delete(base + PATH) as response:
                assert response.status == 404
            async with http.get(base + PATH) as response:
                assert response.status == 404
        assert all(json.dumps(event) for event in events)
        assert {event["reason"] for event in events} == {"allowed", "not-found"}

    run(scenario())


def test_preconditions_if_match_and_if_none_match() -> None:
    async def scenario() -> None:
        async with serving() as (_, base, _events), aiohttp.ClientSession() as http:
            create = {**PUT_HEADERS, "If-None-Match": "*"}
            async with http.put(
                base + PATH, data=FIRE.to_xml(), headers={**PUT_HEADERS, "If-Match": "*"}
            ) as r:
                assert r.status == 412  # nothing to match yet
            async with http.put(base + PATH, data=FIRE.to_xml(), headers=create) as r:
                assert r.status == 201
            async with http.put(base + PATH, data=FIRE.to_xml(), headers=create) as r:
                assert r.status == 412
                assert_plain_refusal(r.status, await r.text(), "precondition-failed")
            changed = GroupDocument(FIRE.group_id, "Changed", FIRE.members)
            stale = {**PUT_HEADERS, "If-Match": '"0000"'}
            async with http.put(base + PATH, data=changed.to_xml(), headers=stale) as r:
                assert r.status == 412
            weak = {**PUT_HEADERS, "If-Match": f"W/{FIRE.etag}"}
            async with http.put(base + PATH, data=changed.to_xml(), headers=weak) as r:
                assert r.status == 412  # a weak tag never matches strongly
            fresh = {**PUT_HEADERS, "If-Match": f'"0000", {FIRE.etag}'}
            async with http.put(base + PATH, data=changed.to_xml(), headers=fresh) as r:
                assert r.status == 200
                new_etag = r.headers["ETag"]
            async with http.get(base + PATH, headers={"If-None-Match": new_etag}) as r:
                assert r.status == 304
                assert r.headers["ETag"] == new_etag
                assert await r.read() == b""
            async with http.get(base + PATH, headers={"If-None-Match": FIRE.etag}) as r:
                assert r.status == 200
            async with http.get(base + PATH, headers={"If-Match": FIRE.etag}) as r:
                assert r.status == 412
            async with http.delete(base + PATH, headers={"If-Match": FIRE.etag}) as r:
                assert r.status == 412
            async with http.delete(base + PATH, headers={"If-Match": new_etag}) as r:
                assert r.status == 200

    run(scenario())


def test_method_size_type_and_path_refusals() -> None:
    async def scenario() -> None:
        async with serving(documents=(FIRE,)) as (_, base, events), aiohttp.ClientSession() as http:
            async with http.post(base + PATH, data=b"x") as r:
                assert r.status == 405
                assert "PUT" in r.headers["Allow"]
                assert_plain_refusal(r.status, await r.text(), "method-not-allowed")
            async with http.put(base + PATH, data=b"<" * (LIMIT + 1), headers=PUT_HEADERS) as r:
                assert r.status == 413
                assert_plain_refusal(r.status, await r.text(), "body-too-large")

            async def chunked() -> AsyncIterator[bytes]:
                for _ in range(4):
                    yield b" " * (LIMIT // 2)

            async with http.put(base + PATH, data=chunked(), headers=PUT_HEADERS) as r:
                assert r.status == 413
            async with http.put(base + PATH, data=FIRE.to_xml(), headers={"Content-Type": "text/plain"}) as r:
                assert r.status == 415
            async with http.get(base + "/org.openmobilealliance.groups/groups/not-a-uri") as r:
                assert r.status == 400
                assert_plain_refusal(r.status, await r.text(), "group-id-invalid")
            async with http.get(base + "/elsewhere") as r:
                assert r.status == 404
                assert_plain_refusal(r.status, await r.text(), "not-found")
            async with http.get(base + PATH, headers={ASSERTED_IDENTITY_HEADER: "nobody"}) as r:
                assert r.status == 400
        refusals = [event for event in events if event["decision"] == "refuse"]
        assert len(refusals) == 7

    run(scenario())


@pytest.mark.parametrize(
    ("body", "element"),
    [
        (b"<group", "not-well-formed"),
        (
            b'<!DOCTYPE group [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b'<group xmlns="urn:oma:xml:poc:list-service"><list-service uri="sip:fire@b.mc.example">'
            b"<display-name>&x;</display-name></list-service></group>",
            "not-well-formed",
        ),
        (
            b'<group xmlns="urn:oma:xml:poc:list-service"><list-service uri="sip:fire@b.mc.example">'
            b"<unknown/></list-service></group>",
            "schema-validation-error",
        ),
        (GroupDocument("sip:other@b.mc.example").to_xml(), "constraint-failure"),
    ],
)
def test_invalid_documents_get_an_xcap_error_409(body: bytes, element: str) -> None:
    async def scenario() -> None:
        async with serving() as (service, base, _events), aiohttp.ClientSession() as http:
            async with http.put(base + PATH, data=body, headers=PUT_HEADERS) as r:
                assert r.status == 409
                assert r.headers["Content-Type"] == XCAP_ERROR_CONTENT_TYPE
                text = await r.read()
            assert service.store.get(FIRE.group_id) is None
        root = parse_xml(text)
        assert root.tag == "{urn:ietf:params:xml:ns:xcap-error}xcap-error"
        assert [child.tag.split("}")[1] for child in root] == [element]
        for leak in (b"Traceback", b"mcinterconnect", b"lxml", b".py", b"passwd"):
            assert leak not in text

    run(scenario())


def test_external_requester_gets_only_what_its_domain_may_see() -> None:
    async def scenario() -> None:
        async with serving(documents=(FIRE,)) as (_, base, _events), aiohttp.ClientSession() as http:
            as_a = {ASSERTED_IDENTITY_HEADER: "sip:gms@a.mc.example"}
            async with http.get(base + PATH, headers=as_a) as r:
                assert r.status == 200
                seen = GroupDocument.from_xml(await r.read())
                etag_a = r.headers["ETag"]
            assert seen.display_name == "Fire brigade" and seen.services == ("mcptt",)
            assert seen.members == (FIRE.members[0],)
            assert seen.visibility == ()
            assert etag_a == seen.etag != FIRE.etag
            async with http.get(base + PATH, headers={**as_a, "If-None-Match": etag_a}) as r:
                assert r.status == 304
            async with http.get(
                base + PATH, headers={ASSERTED_IDENTITY_HEADER: "<sip:gms@c.mc.example>"}
            ) as r:
                seen = GroupDocument.from_xml(await r.read())
            assert seen == GroupDocument(FIRE.group_id, members=(FIRE.members[2],))
            # No visibility rule for the requester's domain: as if the group did not exist
            # (minimum disclosure, WA-IC-12), the same answer as for a group that does not.
            async with http.get(base + PATH, headers={ASSERTED_IDENTITY_HEADER: "sip:x@e.mc.example"}) as r:
                assert r.status == 404
                text = await r.read()
            assert text == b"not-found\n" and "ETag" not in r.headers
            async with http.get(
                base + group_path("sip:nothing@b.mc.example"),
                headers={ASSERTED_IDENTITY_HEADER: "sip:x@e.mc.example"},
            ) as r:
                assert r.status == 404 and await r.read() == text
            async with http.get(
                base + PATH, headers={ASSERTED_IDENTITY_HEADER: "sip:carol@b.mc.example"}
            ) as r:
                assert GroupDocument.from_xml(await r.read()) == FIRE  # own requester: everything
            async with http.put(base + PATH, data=FIRE.to_xml(), headers={**PUT_HEADERS, **as_a}) as r:
                assert r.status == 403
                assert_plain_refusal(r.status, await r.text(), "external-write-refused")
            async with http.delete(base + PATH, headers=as_a) as r:
                assert r.status == 403

    run(scenario())


# --- TLS, and curl as a third-party client -----------------------------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Issued, Issued]:
    directory = tmp_path_factory.mktemp("gms-pki")
    ca = make_ca("MC system B CA", directory)
    return ca, make_leaf(ca, GMS_HOST, client_auth=False)


def _server_context(tls: tuple[Issued, Issued]) -> ssl.SSLContext:
    _, leaf = tls
    return server_context(leaf.cert_path, leaf.key_path, trust_anchors=None, require_client_cert=False)


def test_crud_over_tls_with_aiohttp(tls: tuple[Issued, Issued]) -> None:
    ca, _ = tls
    client = client_context(trust_anchors=[ca.cert_path])

    async def scenario() -> None:
        async with serving(ssl_context=_server_context(tls)) as (service, _base, _events):
            base = f"https://{GMS_HOST}:{service.address[1]}"
            resolver = _StaticResolver(GMS_HOST)
            connector = aiohttp.TCPConnector(resolver=resolver, ssl=client)
            async with aiohttp.ClientSession(connector=connector) as http:
                async with http.put(base + PATH, data=FIRE.to_xml(), headers=PUT_HEADERS) as r:
                    assert r.status == 201
                async with http.get(base + PATH) as r:
                    assert r.status == 200
                    assert GroupDocument.from_xml(await r.read()) == FIRE

    run(scenario())


class _StaticResolver(aiohttp.abc.AbstractResolver):
    """Resolves the one test host name to the loopback address (as curl's --resolve)."""

    def __init__(self, name: str) -> None:
        self._name = name

    async def resolve(self, host: str, port: int = 0, family: int = 0) -> list[Any]:
        assert host == self._name
        return [
            {
                "hostname": host,
                "host": "127.0.0.1",
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": 0,
            }
        ]

    async def close(self) -> None:
        return None


@needs_curl
def test_curl_creates_reads_and_deletes_over_tls(tls: tuple[Issued, Issued], tmp_path: Path) -> None:
    ca, _ = tls
    document = tmp_path / "fire.xml"
    document.write_bytes(FIRE.to_xml())
    hostile = tmp_path / "hostile.xml"
    hostile.write_bytes(b'<!DOCTYPE g [<!ENTITY x SYSTEM "file:///etc/passwd">]><g>&x;</g>')

    async def request(port: int, *extra: str) -> tuple[int, str]:
        answer = await curl(GMS_HOST, port, PATH, ca.cert_path, *extra, timeout=5)
        assert answer.exit_code == 0, answer
        return answer.status, answer.body.decode()

    put = ("-X", "PUT", "-H", f"Content-Type: {GROUP_CONTENT_TYPE}")

    async def scenario() -> None:
        async with serving(ssl_context=_server_context(tls)) as (service, _base, _events):
            port = service.address[1]
            status, _ = await request(port, *put, "-H", "If-None-Match: *", "--data-binary", f"@{document}")
            assert status == 201
            status, _ = await request(port, *put, "-H", "If-None-Match: *", "--data-binary", f"@{document}")
            assert status == 412
            status, body = await request(port, "-D", "-")
            assert status == 200
            assert f"etag: {FIRE.etag}" in body.lower()
            status, body = await request(port, "-H", f"{ASSERTED_IDENTITY_HEADER}: sip:gms@a.mc.example")
            assert status == 200
            assert "sip:alice@a.mc.example" in body and "bob" not in body and "dave" not in body
            status, body = await request(port, *put, "--data-binary", f"@{hostile}")
            assert status == 409 and "xcap-error" in body and "root:" not in body
            status, _ = await request(port, "-X", "DELETE", "-H", f"If-Match: {FIRE.etag}")
            assert status == 200
            status, body = await request(port)
            assert status == 404 and body.strip() == "not-found"

    run(scenario())
