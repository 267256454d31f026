"""``mcic demo``: A and B, a MESSAGE across SIP-3 and the attacker scenarios, then the explicit
phase with SPK protection (EARs: valid both ways, forged, replayed, expired; SPK: protected on the
wire and in clear at bob, tampered, unknown SPK-ID, unprotected), every row as expected."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from mcinterconnect.deploy.demo import DemoRun, run_demo

MCIC = Path(sys.executable).with_name("mcic")

#: Scenarios the demo must show (a row each), whatever else it grows.
EXPECTED_SCENARIOS = (
    "REGISTER alice@A at its home SIP core",
    "REGISTER bob@B at its home SIP core",
    "MESSAGE alice@A -> bob@B across SIP-3",
    "(a) TLS client without a certificate -> A's SIP-3",
    "(a) MC client with a certificate of A's own CA -> A's SIP-3",
    "(b) partner certificate, REGISTER over SIP-3",
    "(c) from B, source claims A's domain (P-Asserted-Identity)",
    "(c) from B, calling user claims A's domain (mcptt-info)",
    "(d) plain TCP (no TLS) -> A's SIP-3",
    "GMS: alice@A reads rescue@B from her own GMS (HTTP proxy A, client side)",
    "GMK of rescue@B: GMS B -> GMS A -> alice@A (re-wrapped by GMS A)",
    "alice@A's client straight to B's HTTP proxy (HTTP-3 side)",
    "alice@A's client straight to B's HTTP proxy (client side)",
    "explicit: GMS A fetches rescue@B with an EAR of GMS A over HTTP-3",
    "explicit: MESSAGE alice@A -> bob@B with an EAR of MCX A",
    "explicit: MESSAGE bob@B -> alice@A with an EAR of MCX B",
    "(e) explicit: forged EAR (key of another identity) -> A's SIP-3",
    "(e) explicit: replayed EAR captured from B's traffic -> A's SIP-3",
    "(e) explicit: expired EAR (Request Expiry passed) -> A's SIP-3",
    "SPK: that MESSAGE encrypted and signed on SIP-3, in clear at bob",
    "(f) SPK: tampered body (a CipherValue byte flipped) -> A's SIP-3",
    "(f) SPK: body protected under an unknown SPK-ID -> A's SIP-3",
    "(f) SPK: unprotected MC body while the SPK is required -> A's SIP-3",
)


def _run_demo(directory: Path) -> DemoRun:
    async def bounded() -> DemoRun:
        async with asyncio.timeout(30):
            return await run_demo(directory)

    return asyncio.run(bounded())


def test_run_demo_passes_every_row_quickly(tmp_path: Path) -> None:
    run = _run_demo(tmp_path / "demo")
    mismatches = [row for row in run.rows if not row.ok]
    assert not mismatches, run.table()
    assert run.ok
    scenarios = [row.scenario for row in run.rows]
    assert all(scenario in scenarios for scenario in EXPECTED_SCENARIOS), scenarios
    assert run.seconds < 20
    # Something did cross SIP-3, and both borders wrote their decisions.
    assert run.sip3_bytes
    refusals = [entry for entry in run.audit["A"] if entry["decision"] == "refuse"]
    assert {entry["reason"] for entry in refusals} >= {
        "register-refused",
        "source-spoofed",
        "calling-user-spoofed",
        "tls-handshake-failed",
    }
    assert [entry["decision"] for entry in run.audit["B"]].count("allow") >= 1
    # The explicit phase: each border admitted one EAR, A refused exactly the three bad ones,
    # then the three bad bodies (each before its EAR was looked at: one audit line each).
    explicit_a, explicit_b = run.audit["A (explicit)"], run.audit["B (explicit)"]
    assert [e["reason"] for e in explicit_a if e["decision"] == "refuse"] == [
        "ear-signature",
        "ear-replay",
        "ear-expired",
        "spk-integrity",
        "spk-unknown",
        "spk-unprotected",
    ]
    for entries in (explicit_a, explicit_b):
        assert [
            bool(e.get("ear"))
            for e in entries
            if e.get("direction") == "inbound" and e["decision"] == "allow"
        ] == [True]
    # Every MESSAGE admitted across the SPK link was protected: its allow lines name the SPK-ID.
    for entries in (explicit_a, explicit_b):
        admitted = [e for e in entries if e["decision"] == "allow" and e.get("method") == "MESSAGE"]
        assert admitted and all(len(str(e.get("spk", ""))) == 8 for e in admitted)
    assert not any(e.get("spk") for entries in (run.audit["A"], run.audit["B"]) for e in entries)
    assert run.explicit_deployment is not None
    assert all(
        p.explicit_inbound and p.explicit_outbound and p.spk is not None and p.spk.required
        for s in run.explicit_deployment.systems
        for p in s.partner
    )
    assert any(b"\r\nMC-EAR: " in data for data in run.explicit_sip3_bytes)
    assert not any(b"\r\nMC-EAR: " in data for data in run.sip3_bytes)  # the implicit phase signs nothing
    # The deployment the demo wrote is a real one, audit log on disk included; the IS proxy, the
    # HTTP proxy and the GMS of a system write to the same file, one component each.
    lines = [json.loads(line) for line in (tmp_path / "demo" / "a" / "audit.jsonl").read_text().splitlines()]
    assert len([line for line in lines if line["component"] == "is-proxy"]) == len(run.audit["A"])
    assert {line["component"] for line in lines} == {"is-proxy", "http-proxy", "gms"}


def test_mcic_demo_command_prints_the_table(tmp_path: Path) -> None:
    keep = tmp_path / "kept"
    result = subprocess.run(
        [str(MCIC), "demo", "--keep", str(keep)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    header = [cell.strip() for cell in lines[0].split("|")]
    assert header[:3] == ["scenario", "expected", "observed"]
    assert set(lines[1]) <= {"-", "+"}
    rows = [line for line in lines[2:] if " | " in line]
    assert len(rows) >= len(EXPECTED_SCENARIOS)
    assert all(row.rstrip().endswith("| ok") for row in rows), result.stdout
    for scenario in EXPECTED_SCENARIOS:
        assert any(row.startswith(scenario) for row in rows), scenario
    assert "MISMATCH" not in result.stdout
    assert lines[-1].startswith("all scenarios as expected in ")
    assert "Traceback" not in result.stderr
    assert (keep / "deployment.toml").is_file()
