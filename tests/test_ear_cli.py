"""``mcic ear decode|sign|verify`` (cli/ear.py): sign → decode → verify as real processes, and every
refusal as exit status 1 with one ``mcic: error: <reason>: <detail>`` line and no traceback.

The many refusal cases run in process through ``cli.main`` (an uncaught exception fails the test
as surely as a traceback would); a few of them also run as real processes."""

from __future__ import annotations

import base64
import json
import subprocess

import pytest

from mcic_helpers import assert_one_error_line, mcic
from mcinterconnect.cli import main
from mcinterconnect.crypto import ec, eccsi
from mcinterconnect.crypto.uid import KeyPeriod
from mcinterconnect.protect.ear import ear_signer_identity

KMS_A = "kms.a.mc.example"
PERIOD = KeyPeriod(2_592_000, 0)
MCX_A = "sip:mcx@a.mc.example"
GMS_B = "sip:gms@b.mc.example"
T = 1_749_988_800  # 2025-06-15T12:00:00Z


def _hex(point: ec.Point) -> str:
    return ec.encode_point(ec.P256, point).hex()


@pytest.fixture(scope="module")
def keys() -> dict[str, str]:
    ksak, kpak = eccsi.generate_kms_keys()
    identity = ear_signer_identity(MCX_A, T, kms_uri=KMS_A, key_period=PERIOD)
    ssk, pvt = eccsi.issue_ssk(ksak, kpak, identity)
    other_kpak = eccsi.generate_kms_keys()[1]
    return {"kpak": _hex(kpak), "ssk": f"{ssk:064x}", "pvt": _hex(pvt), "other_kpak": _hex(other_kpak)}


def kms_options(keys: dict[str, str], kpak: str | None = None) -> list[str]:
    return [
        "--kms-uri",
        KMS_A,
        "--key-period",
        str(PERIOD.length),
        "--key-offset",
        str(PERIOD.offset),
        "--kpak",
        kpak or keys["kpak"],
    ]


def sign_arguments(keys: dict[str, str], *extra: str, time: int = T) -> list[str]:
    return [
        "ear",
        "sign",
        "--source-id",
        MCX_A,
        "--source-role",
        "mcx-server",
        "--target-id",
        GMS_B,
        "--target-role",
        "3",
        *kms_options(keys),
        "--ssk",
        keys["ssk"],
        "--pvt",
        keys["pvt"],
        "--time",
        str(time),
        *extra,
    ]


def sign(keys: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    return mcic(*sign_arguments(keys, *extra))


def in_process(capsys: pytest.CaptureFixture[str], *arguments: str) -> subprocess.CompletedProcess[str]:
    """``mcic ARGUMENTS`` through ``cli.main``, shaped like a finished process."""
    status = main(list(arguments))
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(["mcic", *arguments], status, captured.out, captured.err)


@pytest.fixture(scope="module")
def header(keys: dict[str, str]) -> str:
    result = sign(keys, "--request-type", "group", "--request-id", "0x1234", "--expiry", str(T + 600))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout.strip()


def refusal(result: subprocess.CompletedProcess[str], prefix: str) -> str:
    line = assert_one_error_line(result)
    assert result.stdout == ""
    assert line.startswith(f"mcic: error: {prefix}"), line
    return line


def test_sign_decode_verify(keys: dict[str, str], header: str) -> None:
    data = base64.b64decode(header, validate=True)
    assert data[0] == 0x01
    assert len(data) > 129

    decoded = mcic("ear", "decode", header)
    assert decoded.returncode == 0, decoded.stderr
    fields = json.loads(decoded.stdout)
    assert fields["time"] == T
    assert fields["time_iso"] == "2025-06-15T12:00:00Z"
    assert len(fields["ear_id"]) == 36
    assert fields["source_role"] == {"name": "mcx-server", "value": 2}
    assert fields["source_id"] == MCX_A
    assert fields["target_role"] == {"name": "gms", "value": 3}
    assert fields["target_id"] == GMS_B
    assert fields["request"] == {
        "type": {"name": "group", "value": 3},
        "request_id": 0x1234,
        "expiry": T + 600,
        "expiry_iso": "2025-06-15T12:10:00Z",
    }
    assert fields["payload_octets"] == len(data) - 129
    assert bytes.fromhex(fields["signature"]) == data[-129:]

    verified = mcic(
        "ear",
        "verify",
        header,
        *kms_options(keys),
        "--source-domain",
        "a.mc.example",
        "--target-domain",
        "b.mc.example",
        "--target-id",
        GMS_B,
        "--allow-request-type",
        "group",
        "--now",
        str(T + 10),
    )
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith(f"valid: EAR {fields['ear_id']} from {MCX_A} to {GMS_B}, request group")


def test_sign_without_request_and_verify_with_defaults(keys: dict[str, str]) -> None:
    result = sign(keys)
    assert result.returncode == 0, result.stderr
    header = result.stdout.strip()
    assert json.loads(mcic("ear", "decode", header).stdout)["request"] is None
    verified = mcic("ear", "verify", header, *kms_options(keys), "--now", str(T))
    assert verified.returncode == 0, verified.stderr
    assert "no request" in verified.stdout


@pytest.mark.parametrize(
    ("extra", "prefix"),
    [
        (["--now", str(T + 3600)], "ear-stale: EAR time"),
        (["--now", str(T + 700), "--skew", "1000"], "ear-expired: Request Expiry"),
        (["--source-domain", "c.mc.example"], "ear-source: Source ID 'sip:mcx@a.mc.example'"),
        (["--target-domain", "c.mc.example"], "ear-target: Target ID"),
        (["--target-id", "sip:mcx@b.mc.example"], "ear-target: Target ID"),
        (["--allow-request-type", "migration", "--allow-request-type", "none"], "ear-request-type:"),
    ],
)
def test_verify_refusals(
    capsys: pytest.CaptureFixture[str], keys: dict[str, str], header: str, extra: list[str], prefix: str
) -> None:
    now = [] if "--now" in extra else ["--now", str(T)]
    refusal(in_process(capsys, "ear", "verify", header, *kms_options(keys), *now, *extra), prefix)


def test_verify_refuses_another_kms(keys: dict[str, str], header: str) -> None:
    result = mcic("ear", "verify", header, *kms_options(keys, keys["other_kpak"]), "--now", str(T))
    line = refusal(result, "ear-signature: ECCSI signature refused (signature-mismatch)")
    assert keys["ssk"] not in line


def test_verify_refuses_off_network(keys: dict[str, str]) -> None:
    result = sign(keys, "--request-type", "off-network")
    assert result.returncode == 0, result.stderr
    refusal(
        mcic("ear", "verify", result.stdout.strip(), *kms_options(keys), "--now", str(T)), "ear-request-type:"
    )


@pytest.mark.parametrize(
    ("text", "prefix"),
    [
        ("!!!", "ear-malformed: MC-EAR header value is not standard base64"),
        ("QR==", "ear-malformed: MC-EAR header value is not canonical"),
        (base64.b64encode(bytes(300)).decode(), "ear-malformed: EAR message ID 0x00 at offset 0"),
        (base64.b64encode(bytes(10)).decode(), "ear-malformed: EAR is 10 octets"),
        ("A" * 5000, "ear-malformed: MC-EAR header value longer than 4096"),
    ],
)
def test_malformed_input_is_one_line(
    capsys: pytest.CaptureFixture[str], keys: dict[str, str], text: str, prefix: str
) -> None:
    refusal(in_process(capsys, "ear", "decode", text), prefix)
    refusal(in_process(capsys, "ear", "verify", text, *kms_options(keys)), prefix)


def test_malformed_input_as_a_process(keys: dict[str, str]) -> None:
    refusal(mcic("ear", "decode", "QR=="), "ear-malformed:")
    refusal(
        mcic("ear", "verify", base64.b64encode(bytes(300)).decode(), *kms_options(keys)), "ear-malformed:"
    )


def test_truncated_ear_is_one_line(
    capsys: pytest.CaptureFixture[str], keys: dict[str, str], header: str
) -> None:
    data = base64.b64decode(header)
    request_ie = 3 + 1 + 3 + 6  # 0x78, length, Request type, Request ID, Request Expiry
    for cut in range(len(data)):
        text = base64.b64encode(data[:cut]).decode()
        if cut == len(data) - request_ie:
            # Payload without the Request IE, followed by 129 octets taken for the signature:
            # well formed, and refused by the signature check (the signature covers the layout).
            assert in_process(capsys, "ear", "decode", text).returncode == 0
            result = in_process(capsys, "ear", "verify", text, *kms_options(keys), "--now", str(T))
            refusal(result, "ear-signature:")
            continue
        refusal(in_process(capsys, "ear", "decode", text), "ear-malformed:")


def test_sign_refusal_as_a_process(keys: dict[str, str]) -> None:
    refusal(sign(keys, "--request-type", "4"), "--request-type: 4 is reserved or unknown")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--request-type", "4"], "--request-type: 4 is reserved or unknown"),
        (["--request-type", "0x00"], "--request-type: 0 is reserved or unknown"),
        (["--request-type", "broadcast"], "--request-type: 'broadcast' is not one of"),
        (["--request-id", "1"], "--request-id/--expiry: need --request-type"),
        (["--request-type", "group", "--request-id", "65536"], "--request-id: 65536 is more than 65535"),
        (["--request-type", "group", "--expiry", "soon"], "--expiry: 'soon' is not a number"),
        (["--source-role", "0"], "--source-role: 0 is reserved or unknown"),
        (["--source-id", ""], "ear-malformed: Source ID is empty"),
        (["--target-id", "sip:a b"], "ear-malformed: Target ID holds whitespace"),
        (["--ssk", "xyz"], "--ssk: not an even number of hexadecimal digits"),
        (["--pvt", "04" + "00" * 64], "--pvt:"),
        (["--key-period", "0"], "--key-period/--key-offset: key period length is 0 seconds"),
        (["--key-offset", "99999999999"], "--source-id/--kms-uri/--time:"),
        (["--time", "nan"], "--time: must be finite"),
        (["--time", "-5"], "--time: '-5' is outside"),
        (["--source-id", "sip:other@a.mc.example"], "--ssk/--pvt: not a key set of --source-id"),
        (["--time", str(T + PERIOD.length)], "--ssk/--pvt: not a key set of --source-id"),
    ],
)
def test_sign_refusals(
    capsys: pytest.CaptureFixture[str], keys: dict[str, str], extra: list[str], message: str
) -> None:
    line = refusal(in_process(capsys, *sign_arguments(keys, *extra)), message)
    assert keys["ssk"] not in line


def test_usage_errors_exit_2() -> None:
    result = mcic("ear", "verify")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
