"""The pure parts of bench/border.py (SIPp statistics and message logs, the ramp, the summary),
and ``kamailio -c`` on the configurations it writes, when Kamailio is installed."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import border  # noqa: E402  (bench/ is not a package)
from border import (  # noqa: E402
    BenchError,
    Result,
    SippStats,
    Step,
    added_per_crossing,
    combine_stats,
    find_max_rate,
    parse_message_log,
    parse_stat_csv,
    percentile,
    render_template,
    response_times,
    step_passes,
    summarize,
)

STAT_HEADER = (
    "StartTime;LastResetTime;CurrentTime;ElapsedTime(P);ElapsedTime(C);TargetRate;CallRate(P);"
    "CallRate(C);IncomingCall(P);IncomingCall(C);OutgoingCall(P);OutgoingCall(C);TotalCallCreated;"
    "CurrentCall;SuccessfulCall(P);SuccessfulCall(C);FailedCall(P);FailedCall(C);"
)


def stat_line(created: int, successful: int, failed: int, start: float, now: float) -> str:
    def stamp(value: float) -> str:
        return f"2026-12-04\t20:09:26.923853\t{value:.6f}"

    return (
        f"{stamp(start)};{stamp(now)};{stamp(now)};00:00:00;00:00:02;200;0;199.4;0;0;0;{created};"
        f"{created};0;0;{successful};0;{failed};"
    )


def test_stat_csv_last_line_counts() -> None:
    text = "\n".join(
        [
            STAT_HEADER,
            stat_line(10, 5, 0, 1000.0, 1001.0),
            stat_line(400, 399, 1, 1000.0, 1002.013),
            "",
        ]
    )
    stats = parse_stat_csv(text)
    assert stats == SippStats(created=400, successful=399, failed=1, elapsed=2.013)


def test_stat_csv_unreadable() -> None:
    with pytest.raises(BenchError):
        parse_stat_csv(STAT_HEADER + "\n")
    with pytest.raises(BenchError):
        parse_stat_csv("A;B\n1;2\n")


def test_step_passes_failures_and_time() -> None:
    assert step_passes(SippStats(1000, 1000, 0, 1.0), calls=1000, rate=1000)
    # < 0.1 %: one failure in 1000 is allowed, two are not.
    assert step_passes(SippStats(1000, 999, 1, 1.0), calls=1000, rate=1000)
    assert not step_passes(SippStats(1000, 998, 2, 1.0), calls=1000, rate=1000)
    assert not step_passes(SippStats(300, 300, 1, 1.5), calls=300, rate=200)
    # Late: SIPp held calls back (nominal 1 s, allowed 1.05 s + 0.1 s).
    assert step_passes(SippStats(1000, 1000, 0, 1.14), calls=1000, rate=1000)
    assert not step_passes(SippStats(1000, 1000, 0, 1.3), calls=1000, rate=1000)
    # Not every call made.
    assert not step_passes(SippStats(900, 900, 0, 1.0), calls=1000, rate=1000)


def test_combine_stats() -> None:
    parts = [SippStats(100, 99, 1, 1.2), SippStats(100, 100, 0, 1.5)]
    assert combine_stats(parts) == SippStats(200, 199, 1, 1.5)


MESSAGE_LOG = """\
----------------------------------------------- 2026-12-04 20:09:40.984067
TCP message sent (694 bytes):

INVITE sip:bob@b.mc.example SIP/2.0
Via: SIP/2.0/TCP 127.0.10.1:25061;branch=z9hG4bK-1665-1-0;rport
Call-ID: 1-1665@127.0.10.1
CSeq: 1 INVITE
Content-Length: 0

----------------------------------------------- 2026-12-04 20:09:40.984500
TCP message received [245] bytes :

SIP/2.0 100 Trying
i: 1-1665@127.0.10.1
CSeq: 1 INVITE
Content-Length: 0


----------------------------------------------- 2026-12-04 20:09:40.985567
TCP message received [245] bytes :

SIP/2.0 200 OK
Call-ID: 1-1665@127.0.10.1
CSeq:  1   INVITE
Content-Length: 0


----------------------------------------------- 2026-12-04 20:09:40.986000
TCP message sent (300 bytes):

BYE sip:bob@127.0.20.1 SIP/2.0
Call-ID: 1-1665@127.0.10.1
CSeq: 2 BYE

----------------------------------------------- 2026-12-04 20:09:40.990000
TCP message sent (694 bytes):

INVITE sip:bob@b.mc.example SIP/2.0
Call-ID: 2-1665@127.0.10.1
CSeq: 1 INVITE

----------------------------------------------- 2026-12-04 20:09:40.993250
TCP message received [245] bytes :

SIP/2.0 200 OK
Call-ID: 2-1665@127.0.10.1
CSeq: 1 INVITE

----------------------------------------------- 2026-12-04 20:09:40.999000
TCP message received [245] bytes :

SIP/2.0 200 OK
Call-ID: 1-1665@127.0.10.1
CSeq: 2 BYE

"""


def test_message_log_response_times() -> None:
    messages = parse_message_log(MESSAGE_LOG)
    assert [m.sent for m in messages] == [True, False, False, True, True, False, False]
    assert messages[1].call_id == "1-1665@127.0.10.1"  # compact form "i"
    assert messages[2].cseq == "1 INVITE"
    invites = response_times(messages, "INVITE")
    assert invites == pytest.approx([1.5, 3.25], abs=1e-6)  # the 100 does not end the timing
    assert response_times(messages, "BYE") == pytest.approx([13.0], abs=1e-6)
    assert response_times(messages, "MESSAGE") == []


def test_percentile_and_added_latency() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([3.0], 0.99) == 3.0
    with pytest.raises(BenchError):
        percentile([], 0.5)
    # The request and the response each cross once.
    assert added_per_crossing(5.0, 1.0) == 2.0


def threshold_probe(limit: float, tried: list[float]) -> Callable[[float], Step]:
    def probe(rate: float) -> Step:
        tried.append(rate)
        return Step(rate, rate <= limit)

    return probe


def test_ramp_up_then_bisect() -> None:
    tried: list[float] = []
    ramp = find_max_rate(threshold_probe(700, tried), start=100, bisect_steps=3)
    assert tried[:4] == [100, 200, 400, 800]
    # Geometric bisection between 400 (good) and 800 (bad): 566, 673, 734.
    assert tried[4:] == [566, 673, 734]
    assert ramp.max_rate == 673
    assert [step.passed for step in ramp.steps] == [True, True, True, False, True, True, False]


def test_ramp_down_when_start_fails() -> None:
    tried: list[float] = []
    ramp = find_max_rate(threshold_probe(30, tried), start=100, bisect_steps=1)
    assert tried == [100, 50, 25, 35]
    assert ramp.max_rate == 25


def test_ramp_nothing_passes_and_ceiling() -> None:
    assert find_max_rate(threshold_probe(0, []), start=100, min_rate=10).max_rate is None
    tried: list[float] = []
    ramp = find_max_rate(threshold_probe(1e9, tried), start=100, max_rate=1000)
    assert ramp.max_rate == 800 and tried == [100, 200, 400, 800]


def result(subject: str, scenario: str, rate: float | None, added_p99: float | None = None) -> Result:
    return Result(subject, scenario, max_rate=rate, added_p99_ms=added_p99)


def test_summary_ratios_and_targets() -> None:
    results = [
        result("kamailio-topos", "call", 400, 2.5),
        result("kamailio-topos", "message", 1000),
        result("kamailio-plain", "call", 800),
        result("kamailio-plain", "message", 3000),
        result("ours-implicit", "call", 1000, 1.5),
        result("ours-implicit", "message", 1500, 1.0),
        result("ours-explicit", "call", 600),
    ]
    summary = summarize(results, skipped={"ours-implicit-w2": "no --workers"})
    assert summary["ours_cps"] == 1000 and summary["kamailio_cps"] == 400
    assert summary["kamailio_plain_cps"] == 800
    assert summary["ours_mps"] == 1500 and summary["kamailio_mps"] == 1000
    assert summary["kamailio_plain_mps"] == 3000
    assert summary["ratio"] == 2.5
    assert summary["plain_ratio"] == 1.25
    assert summary["explicit_ratio"] == 1.5
    assert summary["workers2_speedup"] is None
    assert summary["p99_ms"] == 1.5 and summary["p99_message_ms"] == 1.0
    assert summary["targets"]["met"] == {
        "ratio": True,
        "plain_ratio": True,
        "explicit_ratio": False,
        "p99_ms": True,
    }
    assert summary["skipped"] == {"ours-implicit-w2": "no --workers"}
    assert len(summary["results"]) == len(results)


def test_summary_missing_figures_are_null() -> None:
    summary = summarize([result("ours-implicit", "call", 300), result("ours-implicit-w2", "call", 540)])
    assert summary["ratio"] is None and summary["kamailio_cps"] is None
    assert summary["workers2_speedup"] == 1.8
    assert summary["targets"]["met"]["ratio"] is None
    summary = summarize([result("ours-implicit", "call", None), result("kamailio-topos", "call", 0)])
    assert summary["ratio"] is None


def test_fixed_rates_argument() -> None:
    assert border.parse_rates("10,50,150.5") == [10.0, 50.0, 150.5]
    for bad, reason in (("10,x", "'x' is not a number"), ("0", "not a rate"), ("nan", "not a rate")):
        with pytest.raises(BenchError, match=reason):
            border.parse_rates(bad)
    args = border.parse_args(["--rates", "10,20", "--subjects", "ours-implicit", "--scenarios", "call"])
    assert args.rate_list == [10.0, 20.0]
    with pytest.raises(SystemExit):
        border.parse_args(["--rates", "-5"])


def test_tables() -> None:
    fixed = border.FixedRate(
        "ours-implicit", "call", 10.0, calls=100, successful=100, p50_ms=4.96, p99_ms=11.06, added_p50_ms=2.42
    )
    failed = border.FixedRate("kamailio-plain", "call", 0.0, error="kamailio did not start")
    lines = border.fixed_table([fixed, failed]).splitlines()
    assert lines[0].split()[:5] == ["subject", "scen.", "rate/s", "ok", "p50"]
    assert lines[2].split() == ["ours-implicit", "call", "10", "100/100", "4.96", "11.06", "2.42", "-", "-"]
    assert lines[3].split() == ["kamailio-plain", "call", "error:", "kamailio", "did", "not", "start"]
    ramp = result("ours-implicit", "call", 336)
    ramp.peak_rss_mb = 164.0
    row = border.table([ramp]).splitlines()[2].split()
    assert row[:3] == ["ours-implicit", "call", "336"] and row[-2:] == ["164.0", "-"]


def test_template_and_scenario_files(tmp_path: Path) -> None:
    assert render_template("a @@X@@ b", {"X": "1"}) == "a 1 b"
    with pytest.raises(BenchError, match="@@Y@@"):
        render_template("@@X@@ @@Y@@", {"X": "1"})
    for name in ("uac_message.xml", "uac_call.xml"):
        plain = border.scenario_file(tmp_path, name, with_ear=False).read_text(encoding="iso-8859-1")
        assert "MC-EAR" not in plain.split("<scenario", 1)[1]
        signed = border.scenario_file(tmp_path, name, with_ear=True).read_text(encoding="iso-8859-1")
        assert "MC-EAR: [field0]" in signed


def test_missing_tool_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    lines = border.missing_tools(["kamailio-topos", "ours-implicit"])
    assert lines == [
        "sipp not found (install the Debian package sip-tester)",
        "kamailio not found (install the Debian package kamailio)",
        "redis-server not found (install the Debian package redis-server)",
    ]
    assert border.missing_tools(["ours-implicit"]) == [
        "sipp not found (install the Debian package sip-tester)"
    ]


@pytest.mark.skipif(
    shutil.which("kamailio") is None, reason="kamailio not installed (Debian package kamailio)"
)
@pytest.mark.parametrize("topos", [False, True], ids=["plain", "topos"])
def test_generated_kamailio_configs_check(tmp_path: Path, topos: bool) -> None:
    needed = ["tls.so"] + (["topos_redis.so"] if topos else [])
    for module in needed:
        if not (border.KAMAILIO_MODULES / module).exists():
            pytest.skip(f"Kamailio module {module} not installed ({border.KAMAILIO_EXTRA_MODULES[module]})")
    from mcinterconnect.deploy.pki import create_ca, issue_certificate, write_pem, write_private_key

    ca = create_ca("Bench test CA", days=2)
    for letter in ("a", "b"):
        cert, key = issue_certificate(*ca, [f"isproxy.{letter}.mc.example"], common_name="x", days=1)
        write_pem(tmp_path / f"{letter}.crt", cert)
        write_private_key(tmp_path / f"{letter}.key", key)
    write_pem(tmp_path / "ca.crt", ca[0])
    for letter, port in (("a", 45060), ("b", 45070)):
        config = border.write_kamailio_config(
            tmp_path,
            letter,
            internal=("127.0.10.1", port),
            sip3=("127.0.0.1", port + 1),
            next_hop="sip:127.0.0.1:45071;transport=tls",
            partner_name="isproxy.b.mc.example",
            ca_list=tmp_path / "ca.crt",
            topos=topos,
            redis_socket=tmp_path / "redis.sock",
        )
        text = config.read_text()
        assert ("#!define WITH_TOPOS" in text) is topos
        border.check_kamailio_config(config)  # raises BenchError with kamailio's error lines
