"""The demo's HTTP-3 rows (issue 6): a partner group and its key reach alice from her own GMS only.

TS 33.180 11.1.1: what a client needs from a partner system goes partner server → own server →
client.  GMS A keeps the B-homed group ``sip:rescue@b.mc.example`` (WA-IC-21, polled through HTTP
proxy A → HTTP-3 → HTTP proxy B); alice reads it, and its GMK, through her own HTTP proxy's client
side, the GMK re-wrapped by GMS A (WA-IC-22); bob reads the same GMK from GMS B.  Then alice's
client tries B's HTTP proxy directly, on both of its faces, and is refused.

Each row is ``(scenario, expected, observed, ok)``; ``demo.py`` turns them into its table.
"""

from __future__ import annotations

import asyncio
import ssl

import aiohttp

from mcinterconnect.border.audit import AuditLog
from mcinterconnect.deploy.config import SystemConfig
from mcinterconnect.deploy.runner import https_url
from mcinterconnect.deploy.users import proxy_url, user_context, user_keys
from mcinterconnect.services.gmk import GmkError
from mcinterconnect.services.gms_client import GmsClientError, fetch_gmk, fetch_group

DemoRow = tuple[str, str, str, bool]

#: The demo users and groups written by ``mcic init`` (``deploy/init.py``).
ALICE = "sip:alice@a.mc.example"
BOB = "sip:bob@b.mc.example"
GROUP_B = "sip:rescue@b.mc.example"


async def _wait_for_group(home: SystemConfig, user: str, group: str, timeout: float) -> tuple[int, list[str]]:
    """Poll the user's own GMS until it holds ``group`` (GMS A fetches it at start)."""
    url, name = proxy_url(home)
    context = user_context(home, user)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            fetched = await fetch_group(
                url, group, ssl_context=context, server_hostname=name, timeout=timeout
            )
            assert fetched.document is not None
            return fetched.status, [member.id for member in fetched.document.members]
        except GmsClientError as error:
            if error.status not in (503, 404) or loop.time() > deadline:
                raise
            await asyncio.sleep(0.1)


async def group_rows(system_a: SystemConfig, system_b: SystemConfig, *, timeout: float) -> list[DemoRow]:
    """Rows: alice reads the B-homed group and its GMK from GMS A; direct tries at B refused."""
    rows: list[DemoRow] = []
    scenario = "GMS: alice@A reads rescue@B from her own GMS (HTTP proxy A, client side)"
    expected = "200, members homed in A only"
    try:
        status, members = await _wait_for_group(system_a, "alice", GROUP_B, timeout)
        observed = f"{status}; members: {', '.join(m.removeprefix('sip:') for m in members) or 'none'}"
        rows.append((scenario, expected, observed, status == 200 and members == [ALICE]))
    except GmsClientError as error:
        rows.append((scenario, expected, f"{error.reason}: {error}", False))

    scenario = "GMK of rescue@B: GMS B -> GMS A -> alice@A (re-wrapped by GMS A)"
    expected = "alice opens the GMK bob gets from GMS B"
    try:
        opened = []
        for home, user, uri in ((system_a, "alice", ALICE), (system_b, "bob", BOB)):
            assert home.gms is not None
            url, name = proxy_url(home)
            keys = await user_keys(home, user)
            opened.append(
                await fetch_gmk(
                    url,
                    GROUP_B,
                    user_uri=uri,
                    keys=keys,
                    gms_psi=home.gms.psi,
                    ssl_context=user_context(home, user),
                    server_hostname=name,
                    timeout=timeout,
                )
            )
        alice, bob = opened
        same = alice.gmk == bob.gmk and alice.gmk_id == bob.gmk_id
        observed = f"GMK-ID {alice.gmk_id:08x} signed by {alice.initiator_uri.removeprefix('sip:')}; " + (
            "same GMK as bob" if same else "GMK differs from bob's"
        )
        rows.append((scenario, expected, observed, same and alice.initiator_uri == "sip:gms@a.mc.example"))
    except (GmsClientError, GmkError) as error:
        rows.append((scenario, expected, f"{error}", False))

    assert system_b.http_proxy is not None
    for face_name, face in (
        ("HTTP-3", system_b.http_proxy.http3_listen),
        ("client", system_b.http_proxy.client_listen),
    ):
        scenario = f"alice@A's client straight to B's HTTP proxy ({face_name} side)"
        expected = "refused"
        try:
            fetched = await fetch_group(
                https_url(face),
                GROUP_B,
                ssl_context=user_context(system_a, "alice", also_trust=system_b),
                server_hostname=system_b.http_proxy.public_host,
                timeout=timeout,
            )
            rows.append((scenario, expected, f"{fetched.status}: the document was served", False))
        except GmsClientError as error:
            refused = error.reason == "transport" or (error.status == 403)
            observed = f"{error.status} {error.refusal}" if error.status else "refused in the TLS handshake"
            rows.append((scenario, expected, observed, refused))
        except (aiohttp.ClientError, ssl.SSLError, OSError):
            rows.append((scenario, expected, "refused in the TLS handshake", True))
    return rows


async def explicit_group_row(system_a: SystemConfig, proxy_b_audit: AuditLog, *, timeout: float) -> DemoRow:
    """Explicit phase: GMS A's requests for rescue@B carry an EAR signed by GMS A, which HTTP proxy
    B verifies (TS 33.180 9.6) before GMS B answers; alice still reads the group at home."""
    scenario = "explicit: GMS A fetches rescue@B with an EAR of GMS A over HTTP-3"
    expected = "EAR verified by HTTP proxy B; alice reads the group"
    try:
        status, members = await _wait_for_group(system_a, "alice", GROUP_B, timeout)
    except GmsClientError as error:
        return scenario, expected, f"{error.reason}: {error}", False
    verified = [
        str(line["ear"])
        for line in list(proxy_b_audit.recent)
        if line.get("decision") == "allow" and line.get("side") == "http3" and line.get("ear")
    ]
    observed = f"EAR {verified[0][:8]} verified; " if verified else "no EAR verified; "
    observed += f"alice: {status}, {len(members)} member(s)"
    return scenario, expected, observed, bool(verified) and status == 200 and members == [ALICE]
