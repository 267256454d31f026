"""Sans-IO cost per message of the IS proxy core (no sockets, no event loop).

A two-system deployment is written with ``init_deployment`` into a temporary folder and the IS
proxy cores of A and B are built exactly as ``deploy/runner.py`` builds them (same settings,
partner agreements, internal markers, sealing keys from the key file, audit log appended to the
configured file).  The messages are those the running demo hands to the IS proxies: a short-data
MESSAGE (multipart body: mcptt-info + text) as A's MCX server forwards it (3 internal Vias), its
200 coming back from B's MCX server, and an INVITE (Record-Route set of A's SIP core, Contact).

Cases, each timed with ``time.perf_counter`` (best of ``--repeats`` repeats, each long enough):

* ``baseline``         parse_message + to_bytes of the MESSAGE: what any proxy must at least do;
* ``message_crossing`` A exit (internal → SIP-3) + B entry (SIP-3 → internal) of the parsed
  MESSAGE, with to_bytes of each output (two proxy hops, no parse);
* ``response_back``    the 200 through B (internal → SIP-3) then A (SIP-3 → internal), to_bytes each;
* ``invite_exit``      the INVITE through A's exit point only, with to_bytes;
* ``message_crossing_node`` (extra) as ``message_crossing`` but entered by ``on_request`` with the
  ``PeerInfo`` the transport gives, which identifies the TLS peer of every SIP-3 message.

A breakdown then times the pieces (parse alone, sealing one Via stack, reading mcptt-info, one
audit line, the TLS peer check...).  Every figure is printed as µs per operation, operations per
second and the ratio to the baseline measured in the same run (ARCHITECTURE.md §5); the last line
is one JSON object with all figures.  ``--quick`` is a smoke run of a few seconds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from benchlib import machine
from mcinterconnect.border.audit import AuditLog
from mcinterconnect.border.isproxy import INTERNAL_LISTENER, SIP3_LISTENER, Arrival, IsProxy
from mcinterconnect.border.sealing import Sealer
from mcinterconnect.border.topology import Side
from mcinterconnect.deploy import runner
from mcinterconnect.deploy.config import SystemConfig, load_deployment
from mcinterconnect.deploy.init import init_deployment
from mcinterconnect.mcinfo import MCPTT_INFO_TYPE, McpttInfo, find_mcptt_info
from mcinterconnect.sip.message import Headers, SipRequest, SipResponse, make_response
from mcinterconnect.sip.multipart import BodyPart, build_multipart
from mcinterconnect.sip.parser import parse_message
from mcinterconnect.sip.proxy import Forward, stamp_received
from mcinterconnect.sip.transport import Address, PeerInfo
from mcinterconnect.sip.uri import Via

ALICE = "sip:alice@a.mc.example"
BOB = "sip:bob@b.mc.example"
TEXT = "Fire on level 3, need support"
#: Ephemeral ports the connections between components would come from (any value does).
MCX_A_SOURCE_PORT = 40354
SIP3_A_TO_B_SOURCE_PORT = 42108
MCX_B_SOURCE_PORT = 50634
CALIBRATION_SECONDS = 0.05


#: (name, description, the call timed)
Operation = tuple[str, str, Callable[[], object]]


class BenchError(RuntimeError):
    """The cores did not do what the benchmark times (a refusal would be timed instead)."""


@dataclass(frozen=True)
class Timing:
    name: str
    description: str
    seconds_per_op: float
    #: Process CPU time per operation in the same best round (``time.process_time``): far below
    #: the wall time, it shows that other work on the machine took the CPU away meanwhile.
    cpu_seconds_per_op: float
    iterations: int
    repeats: int

    @property
    def us_per_op(self) -> float:
        return self.seconds_per_op * 1e6

    @property
    def ops_per_s(self) -> float:
        return 1.0 / self.seconds_per_op


# --------------------------------------------------------------------------- the cores
@dataclass
class Borders:
    """The IS proxy cores of A and B, built as ``deploy/runner.py`` builds them."""

    config_a: SystemConfig
    config_b: SystemConfig
    a: IsProxy
    b: IsProxy
    audits: list[AuditLog]
    certificate_a: x509.Certificate

    def close(self) -> None:
        for audit in self.audits:
            audit.close()


def build_border(config: SystemConfig) -> tuple[IsProxy, AuditLog]:
    """``start_system``'s IsProxy construction, without the listeners."""
    sealer = Sealer.from_file(config.is_proxy.sealing_keys)
    audit = AuditLog(config.system.audit_log, system=config.system.name, component="is-proxy")
    return runner.build_border(config, sealer, audit), audit


def build_borders(directory: Path) -> Borders:
    init_deployment(directory)
    config_a, config_b = load_deployment(directory).systems
    border_a, audit_a = build_border(config_a)
    border_b, audit_b = build_border(config_b)
    certificate_a = x509.load_pem_x509_certificate(config_a.is_proxy.certificate.read_bytes())
    return Borders(config_a, config_b, border_a, border_b, [audit_a, audit_b], certificate_a)


# ------------------------------------------------------------------------ the messages
def _hostport(address: Address) -> str:
    return f"{address.host}:{address.port}"


def internal_vias(config: SystemConfig) -> list[str]:
    """The Via stack a request from A's MCX server carries: MCX server, SIP core, client."""
    mcx = _hostport(config.mcx_server.listen)
    core = _hostport(config.sip_core.server_listen)
    client = f"{config.sip_core.client_listen.host}:35515"
    return [
        f"SIP/2.0/TCP {mcx};branch=z9hG4bKd01827cfeeb0e0aeae8451da;rport",
        f"SIP/2.0/TCP {core};branch=z9hG4bK2917e26ae53832d16250e5d8;received=127.0.0.1;rport=49352",
        f"SIP/2.0/TCP {client};branch=z9hG4bKb56ff2df5e0e0975;received=127.0.0.1;rport=35922",
    ]


def _wire(start_line: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
    lines = [start_line, *(f"{name}: {value}" for name, value in headers), f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


def short_data_message(config: SystemConfig) -> bytes:
    """The MESSAGE alice@A → bob@B as A's MCX server hands it to A's IS proxy."""
    info = McpttInfo(request_uri=BOB, calling_user_id=ALICE).to_xml()
    content_type, body = build_multipart(
        [
            BodyPart(Headers([("Content-Type", MCPTT_INFO_TYPE)]), info),
            BodyPart(Headers([("Content-Type", "text/plain; charset=utf-8")]), TEXT.encode()),
        ],
        boundary="cdb74ee346243b908d5d1379239b59d7",
    )
    headers = [
        *(("Via", via) for via in internal_vias(config)),
        ("Max-Forwards", "68"),
        ("From", f"<{ALICE}>;tag=67088313"),
        ("To", f"<{BOB}>"),
        ("Call-ID", "e71f1f06a95f-2"),
        ("CSeq", "2 MESSAGE"),
        ("User-Agent", "mcic-client"),
        ("Content-Type", content_type),
        ("P-Asserted-Identity", f"<{ALICE}>"),
    ]
    return _wire(f"MESSAGE {BOB} SIP/2.0", headers, body)


def private_call_invite(config: SystemConfig) -> bytes:
    """An INVITE alice@A → bob@B with SDP and mcptt-info, record-routed by A's SIP core."""
    client = config.sip_core.client_listen.host
    info = McpttInfo(session_type="private", request_uri=BOB, calling_user_id=ALICE).to_xml()
    sdp = (
        b"v=0\r\no=alice 2890844526 2890844526 IN IP4 198.51.100.7\r\ns=-\r\n"
        b"c=IN IP4 198.51.100.7\r\nt=0 0\r\nm=audio 49170 RTP/SAVP 96\r\n"
        b"a=rtpmap:96 AMR-WB/16000\r\nm=application 49172 udp MCPTT\r\na=fmtp:MCPTT mc_queueing\r\n"
    )
    content_type, body = build_multipart(
        [
            BodyPart(Headers([("Content-Type", "application/sdp")]), sdp),
            BodyPart(Headers([("Content-Type", MCPTT_INFO_TYPE)]), info),
        ],
        boundary="a8f3c0e6d2b94f7e9c1d5b6a7e8f9012",
    )
    record_routes = [
        f"<sip:{_hostport(config.sip_core.server_listen)};transport=tcp;lr>",
        f"<sip:{_hostport(config.sip_core.client_listen)};transport=tcp;lr>",
    ]
    headers = [
        *(("Via", via) for via in internal_vias(config)),
        ("Max-Forwards", "68"),
        *(("Record-Route", value) for value in record_routes),
        ("From", f"<{ALICE}>;tag=9fxced76sl"),
        ("To", f"<{BOB}>"),
        ("Call-ID", "3848276298220188511@a-client"),
        ("CSeq", "1 INVITE"),
        ("Contact", f"<sip:alice@{client}:35515;transport=tcp>;+g.3gpp.mcptt"),
        ("Allow", "INVITE, ACK, CANCEL, BYE, MESSAGE, OPTIONS, UPDATE"),
        ("Supported", "timer"),
        ("Session-Expires", "1800"),
        ("User-Agent", "mcic-client"),
        ("Content-Type", content_type),
        ("P-Asserted-Identity", f"<{ALICE}>"),
    ]
    return _wire(f"INVITE {BOB} SIP/2.0", headers, body)


# ------------------------------------------------------------------ operations timed
@dataclass
class Scenario:
    """Everything the timed operations use, prepared (and checked) once."""

    borders: Borders
    message_bytes: bytes
    message: SipRequest
    invite: SipRequest
    exit_arrival: Arrival
    entry_arrival: Arrival
    response_at_b: SipResponse
    back_arrival_b: Arrival
    back_arrival_a: Arrival
    exit_peer: PeerInfo
    entry_peer: PeerInfo


def _one(forwards: list[Forward], what: str) -> Forward:
    if len(forwards) != 1:
        raise BenchError(f"{what}: expected one forward, got {len(forwards)}")
    return forwards[0]


def _request_out(forwards: list[Forward], what: str) -> SipRequest:
    message = _one(forwards, what).message
    if not isinstance(message, SipRequest):
        raise BenchError(f"{what}: refused with {message.status} {message.headers.get('Warning')}")
    return message


def prepare(borders: Borders) -> Scenario:
    """Build the messages and run each path once, checking it is forwarded (not refused)."""
    config_a, config_b = borders.config_a, borders.config_b
    message_bytes = short_data_message(config_a)
    message = parse_message(message_bytes, stream=True)
    invite = parse_message(private_call_invite(config_a), stream=True)
    assert isinstance(message, SipRequest) and isinstance(invite, SipRequest)

    mcx_a = config_a.mcx_server.listen.host
    sip3_a_source = (config_a.is_proxy.sip3_listen.host, SIP3_A_TO_B_SOURCE_PORT)
    exit_arrival = Arrival(Side.INTERNAL, (mcx_a, MCX_A_SOURCE_PORT))
    entry_arrival = Arrival(Side.EXTERNAL, sip3_a_source, config_b.partner[0].name)

    first = _one(borders.a.handle_request(message, exit_arrival), "A exit")
    to_b = first.message
    if not isinstance(to_b, SipRequest) or first.destination != config_a.partner[0].is_proxy_address:
        raise BenchError(f"A exit: not forwarded to B's IS proxy: {first}")
    if to_b.uri != config_a.partner[0].psis["mcptt"]:
        raise BenchError(f"A exit: Request-URI {to_b.uri} is not B's PSI")
    second = _one(borders.b.handle_request(to_b, entry_arrival), "B entry")
    inside_b = second.message
    if not isinstance(inside_b, SipRequest) or second.destination != config_b.mcx_server.listen:
        raise BenchError(f"B entry: not forwarded to B's MCX server: {second}")

    # The 200 as B's MCX server returns it: its own Via popped, B's IS proxy Via on top, stamped.
    answered = inside_b.copy()
    stamp_received(answered, (config_b.mcx_server.listen.host, MCX_B_SOURCE_PORT))
    response_at_b = make_response(answered, 200, to_tag="e76f26f8")
    back_arrival_b = Arrival(Side.INTERNAL, (config_b.mcx_server.listen.host, MCX_B_SOURCE_PORT))
    back_arrival_a = Arrival(Side.EXTERNAL, sip3_a_source, config_a.partner[0].name)
    back = _one(borders.b.handle_response(response_at_b, back_arrival_b), "200 through B")
    if not isinstance(back.message, SipResponse):
        raise BenchError("200 through B: not a response")
    home = _one(borders.a.handle_response(back.message, back_arrival_a), "200 through A")
    expected_vias = internal_vias(config_a)
    if home.message.headers.get_all("Via")[1:] != expected_vias[1:] or home.destination != Address(
        "tcp", mcx_a, MCX_A_SOURCE_PORT
    ):
        raise BenchError(f"200 through A: Via stack or destination not restored: {home}")
    if home.message.call_id != message.call_id:
        raise BenchError("200 through A: Call-ID not restored")

    invite_out = _request_out(borders.a.handle_request(invite, exit_arrival), "INVITE A exit")
    if len(invite_out.headers.get_all("Record-Route")) != 1 or "ct=" not in (
        invite_out.headers.get("Contact") or ""
    ):
        raise BenchError("INVITE A exit: Record-Route or Contact not sealed")

    internal_listen = config_a.is_proxy.internal_listen
    exit_peer = PeerInfo(
        "tcp",
        (mcx_a, MCX_A_SOURCE_PORT),
        (internal_listen.host, internal_listen.port),
        INTERNAL_LISTENER,
        None,
        1,
    )
    sip3_b = config_b.is_proxy.sip3_listen
    entry_peer = PeerInfo(
        "tls", sip3_a_source, (sip3_b.host, sip3_b.port), SIP3_LISTENER, borders.certificate_a, 2
    )
    if borders.b.arrival(entry_peer) != entry_arrival:
        raise BenchError("B does not identify A's certificate as its partner's IS proxy")
    return Scenario(
        borders,
        message_bytes,
        message,
        invite,
        exit_arrival,
        entry_arrival,
        response_at_b,
        back_arrival_b,
        back_arrival_a,
        exit_peer,
        entry_peer,
    )


def case_operations(s: Scenario) -> list[Operation]:
    a, b = s.borders.a, s.borders.b
    data, message, invite, response = s.message_bytes, s.message, s.invite, s.response_at_b

    def baseline() -> object:
        return parse_message(data, stream=True).to_bytes()

    def message_crossing() -> object:
        (out_a,) = a.handle_request(message, s.exit_arrival)
        out_a.message.to_bytes()
        assert isinstance(out_a.message, SipRequest)
        (out_b,) = b.handle_request(out_a.message, s.entry_arrival)
        return out_b.message.to_bytes()

    def response_back() -> object:
        (out_b,) = b.handle_response(response, s.back_arrival_b)
        out_b.message.to_bytes()
        assert isinstance(out_b.message, SipResponse)
        (out_a,) = a.handle_response(out_b.message, s.back_arrival_a)
        return out_a.message.to_bytes()

    def invite_exit() -> object:
        (out_a,) = a.handle_request(invite, s.exit_arrival)
        return out_a.message.to_bytes()

    def message_crossing_node() -> object:
        (out_a,) = a.on_request(message, s.exit_peer)
        out_a.message.to_bytes()
        assert isinstance(out_a.message, SipRequest)
        (out_b,) = b.on_request(out_a.message, s.entry_peer)
        return out_b.message.to_bytes()

    return [
        ("baseline", "parse_message + to_bytes of the MESSAGE (one hop, reference)", baseline),
        ("message_crossing", "MESSAGE: A exit + B entry, to_bytes of each output", message_crossing),
        ("response_back", "200: B (internal->SIP-3) + A (SIP-3->internal), to_bytes each", response_back),
        ("invite_exit", "INVITE with Record-Route/Contact: A exit only, to_bytes", invite_exit),
        (
            "message_crossing_node",
            "as message_crossing, entered by on_request(PeerInfo) as the node does (peer check)",
            message_crossing_node,
        ),
    ]


def breakdown_operations(s: Scenario) -> list[Operation]:
    a, b = s.borders.a, s.borders.b
    data, message = s.message_bytes, s.message
    (to_b,) = a.handle_request(message, s.exit_arrival)
    at_b = to_b.message
    assert isinstance(at_b, SipRequest)
    via_stack = "\n".join(message.headers.get_all("Via")).encode()
    sealer = a.topology.sealer
    token = sealer.seal("via:external", via_stack)
    audit = s.borders.audits[0]
    certificate = s.borders.certificate_a
    sealed_via = at_b.headers.get("Via") or ""
    sip3_bytes = at_b.to_bytes()
    (inside_b,) = b.handle_request(at_b, s.entry_arrival)
    inside_b_bytes = inside_b.message.to_bytes()
    plain_via = message.headers.get("Via") or ""

    def parse_only() -> object:
        return parse_message(data, stream=True)

    def parse_sip3() -> object:
        return parse_message(sip3_bytes, stream=True)

    def parse_inside_b() -> object:
        return parse_message(inside_b_bytes, stream=True)

    def to_bytes_only() -> object:
        return message.to_bytes()

    def copy_only() -> object:
        return message.copy()

    def exit_only() -> object:
        return a.handle_request(message, s.exit_arrival)

    def entry_only() -> object:
        return b.handle_request(at_b, s.entry_arrival)

    def seal_via_stack() -> object:
        return sealer.seal("via:external", via_stack)

    def unseal_via_stack() -> object:
        return sealer.try_unseal("via:external", token)

    def via_parse_plain() -> object:
        return Via.parse(plain_via)

    def via_parse_sealed() -> object:
        return Via.parse(sealed_via)

    def read_mcptt_info() -> object:
        return find_mcptt_info(message)

    def audit_line() -> object:
        return audit.record("allow", "allowed", side="internal", direction="outbound", partner="B")

    def tls_peer_check() -> object:
        return b.identify_peer(certificate, s.entry_arrival.remote)

    return [
        ("parse_only", f"parse_message of the MESSAGE at A ({len(data)} bytes)", parse_only),
        ("parse_sip3", f"parse_message of the MESSAGE on SIP-3 ({len(sip3_bytes)} bytes)", parse_sip3),
        (
            "parse_inside_b",
            f"parse_message of the MESSAGE after B's entry ({len(inside_b_bytes)} bytes)",
            parse_inside_b,
        ),
        ("to_bytes_only", "to_bytes of the parsed MESSAGE", to_bytes_only),
        ("copy_only", "SipRequest.copy (handle_request makes two)", copy_only),
        ("exit_only", "A exit (handle_request), no to_bytes", exit_only),
        ("entry_only", "B entry (handle_request), no to_bytes", entry_only),
        ("seal_via_stack", "AES-SIV seal of the 3-Via stack (one token)", seal_via_stack),
        ("unseal_via_stack", "AES-SIV unseal of that token", unseal_via_stack),
        ("via_parse_plain", f"Via.parse of an internal Via ({len(plain_via)} chars)", via_parse_plain),
        ("via_parse_sealed", f"Via.parse of A's SIP-3 Via ({len(sealed_via)} chars)", via_parse_sealed),
        ("read_mcptt_info", "find_mcptt_info: multipart split + lxml parse", read_mcptt_info),
        ("audit_line", "AuditLog.record: one JSON line, file write + flush", audit_line),
        ("tls_peer_check", "identify_peer, per SIP-3 message (verdict cached per peer)", tls_peer_check),
    ]


# ---------------------------------------------------------------------------- timing
def _run(operation: Callable[[], object], iterations: int) -> tuple[float, float]:
    """Wall time (perf_counter) and process CPU time of ``iterations`` calls."""
    loop = range(iterations)
    clock = time.perf_counter
    cpu_start = time.process_time()
    start = clock()
    for _ in loop:
        operation()
    wall = clock() - start
    return wall, time.process_time() - cpu_start


def _iterations_for(operation: Callable[[], object], seconds: float) -> int:
    """How many calls of ``operation`` take about ``seconds``."""
    iterations = 1
    while True:
        elapsed, _ = _run(operation, iterations)
        if elapsed >= CALIBRATION_SECONDS:
            break
        iterations *= 2
    return max(1, math.ceil(iterations * seconds / elapsed))


def measure(operations: list[Operation], *, seconds: float, repeats: int) -> list[Timing]:
    """Best time per call of each operation over ``repeats`` rounds of about ``seconds`` each.

    Rounds are interleaved (every operation once per round), so that a slow spell of the machine
    touches every case alike rather than the one case that happened to run then.
    """
    counts = [_iterations_for(operation, seconds) for _, _, operation in operations]
    best = [(math.inf, math.inf)] * len(operations)
    for number in range(repeats):
        print(f"  round {number + 1}/{repeats}", file=sys.stderr, flush=True)
        for index, (_, _, operation) in enumerate(operations):
            best[index] = min(best[index], _run(operation, counts[index]))
    return [
        Timing(
            name,
            description,
            best[index][0] / counts[index],
            best[index][1] / counts[index],
            counts[index],
            repeats,
        )
        for index, (name, description, _) in enumerate(operations)
    ]


def _row(timing: Timing, baseline: Timing) -> str:
    ratio = timing.seconds_per_op / baseline.seconds_per_op
    return (
        f"{timing.name:<23} {timing.us_per_op:>9.1f} {timing.ops_per_s:>11,.0f} {ratio:>7.2f} "
        f"{timing.cpu_seconds_per_op * 1e6:>9.1f}  {timing.description}"
    )


def _figures(timings: list[Timing], baseline: Timing) -> dict[str, dict[str, float | int]]:
    return {
        t.name: {
            "us_per_op": round(t.us_per_op, 2),
            "ops_per_s": round(t.ops_per_s, 1),
            "ratio_to_baseline": round(t.seconds_per_op / baseline.seconds_per_op, 3),
            "cpu_us_per_op": round(t.cpu_seconds_per_op * 1e6, 2),
            "iterations": t.iterations,
        }
        for t in timings
    }


@contextmanager
def temporary_folder() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="mcic-bench-core-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run(seconds: float, repeats: int, *, breakdown: bool) -> dict[str, object]:
    with temporary_folder() as folder:
        borders = build_borders(folder / "deployment")
        try:
            scenario = prepare(borders)
            header = f"{'case':<23} {'µs/op':>9} {'ops/s':>11} {'ratio':>7} {'cpu µs/op':>9}  what"
            cases = case_operations(scenario)
            parts_operations = breakdown_operations(scenario) if breakdown else []
            print(
                f"IS proxy core, sans-IO; best of {repeats} interleaved rounds, ~{seconds:g} s per case each"
            )
            all_timings = measure([*cases, *parts_operations], seconds=seconds, repeats=repeats)
            timings, parts = all_timings[: len(cases)], all_timings[len(cases) :]
            baseline = timings[0]
            print(header)
            for timing in timings:
                print(_row(timing, baseline))
            if parts:
                print("\nbreakdown (ratio to the same baseline)")
                print(header)
                for timing in parts:
                    print(_row(timing, baseline))
            sizes = {
                "message_bytes": len(scenario.message_bytes),
                "invite_bytes": len(scenario.invite.to_bytes()),
            }
        finally:
            borders.close()
    return {
        "bench": "isproxy_core",
        "settings": {"seconds_per_repeat": seconds, "repeats": repeats},
        "machine": machine(),
        "sizes": sizes,
        "cases": _figures(timings, baseline),
        "breakdown": _figures(parts, baseline),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run (a few seconds)")
    parser.add_argument("--seconds", type=float, default=0.5, help="seconds per repeat (default 0.5)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats per case, best kept (default 5)")
    parser.add_argument("--no-breakdown", action="store_true", help="time the cases only")
    args = parser.parse_args(argv)
    seconds, repeats = (0.05, 2) if args.quick else (args.seconds, args.repeats)
    load_at_start = round(os.getloadavg()[0], 2)
    print(f"load average (1 min) before the run: {load_at_start} on {os.cpu_count()} CPUs")
    try:
        figures = run(seconds, max(1, repeats), breakdown=not args.no_breakdown)
    except BenchError as error:
        print(f"isproxy_core: {error}", file=sys.stderr)
        return 1
    figures["loadavg_1min_at_start"] = load_at_start
    print(json.dumps(figures, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
