"""``mcic mikey make`` / ``mcic mikey open`` (cli/mikey.py): round trips through the real command,
and every refusal as exit status 1 with one line on stderr and no traceback.

The KMS (KSAK/KPAK for ECCSI, z/Z for SAKKE) runs in process and hands its keys to the command in
hex, for the key period of the real clock, as an operator would.  Most cases run ``mcic`` as a
subprocess; the period arithmetic of ``make`` is checked in process through ``cli.main``.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import subprocess
from collections.abc import Callable

import pytest

from mcic_helpers import BOUND, MCIC, mcic
from mcic_helpers import assert_one_error_line as assert_one_error_line_of_mcic
from mcinterconnect.cli import main
from mcinterconnect.crypto import ec, eccsi, keyids, mikey, sakke, uid
from mcinterconnect.crypto.uid import KeyPeriod

KMS = "kms.example.org"
ALICE = "sip:alice@a.mc.example"
BOB = "sip:bob@a.mc.example"
PERIOD = KeyPeriod(2_592_000, 0)
KEY = "00112233445566778899aabbccddeeff"
GMK = bytes.fromhex("07d1a1677ac36d8e81620484689b3c2d")
GMK_ID = 0x0DF9BC39


def assert_one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.stdout == ""
    return assert_one_error_line_of_mcic(result)


def assert_one_error_line_in_process(status: int, out: str, err: str) -> str:
    assert status == 1, err
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("mcic: error: ")
    return lines[0]


def _p256(point: ec.Point) -> str:
    return ec.encode_point(ec.P256, point).hex()


def _sakke_point(point: ec.Point) -> str:
    return ec.encode_point(sakke.CURVE, point).hex()


@dataclasses.dataclass(frozen=True)
class Keys:
    number: int
    kpak: str
    z: str
    ssk: str
    pvt: str
    rsk: str
    other_kpak: str
    other_rsk: str
    ksak: int
    master: int
    kpak_point: ec.Point

    def common(self, **changes: str) -> list[str]:
        options = {
            "--kms-uri": KMS,
            "--key-period": str(PERIOD.length),
            "--key-offset": str(PERIOD.offset),
            "--period-no": str(self.number),
            "--kpak": self.kpak,
            "--z": self.z,
            "--initiator-uri": ALICE,
            "--responder-uri": BOB,
        }
        options.update(changes)
        return [item for pair in options.items() for item in pair]

    def make_args(self, **changes: str) -> list[str]:
        options = {"--key": KEY, "--key-id": "1234abcd", "--ssk": self.ssk, "--pvt": self.pvt}
        options.update({k: v for k, v in changes.items() if k in options})
        rest = {k: v for k, v in changes.items() if k not in options}
        return ["mikey", "make", *[i for p in options.items() for i in p], *self.common(**rest)]

    def open_args(self, message: str, **changes: str) -> list[str]:
        rsk = changes.pop("--rsk", self.rsk)
        return ["mikey", "open", "--message", message, "--rsk", rsk, *self.common(**changes)]


@pytest.fixture(scope="module")
def keys() -> Keys:
    number = PERIOD.number_now()
    ksak, kpak = eccsi.generate_kms_keys()
    z, big_z = sakke.generate_master_secret()
    ssk, pvt = eccsi.issue_ssk(ksak, kpak, uid.uid(ALICE, KMS, PERIOD, number))
    rsk = sakke.issue_rsk(z, uid.uid(BOB, KMS, PERIOD, number))
    _, other_kpak = eccsi.generate_kms_keys()
    other_rsk = sakke.issue_rsk(z, uid.uid("sip:carol@a.mc.example", KMS, PERIOD, number))
    return Keys(
        number=number,
        kpak=_p256(kpak),
        z=_sakke_point(big_z),
        ssk=f"{ssk:064x}",
        pvt=_p256(pvt),
        rsk=_sakke_point(rsk),
        other_kpak=_p256(other_kpak),
        other_rsk=_sakke_point(other_rsk),
        ksak=ksak,
        master=z,
        kpak_point=kpak,
    )


@pytest.fixture(scope="module")
def message(keys: Keys) -> str:
    result = mcic(*keys.make_args())
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    text = result.stdout.strip()
    assert "\n" not in text
    mikey.parse_i_message(base64.b64decode(text, validate=True))
    return text


def test_make_then_open_gives_back_the_key(keys: Keys, message: str) -> None:
    result = mcic(*keys.open_args(message))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0]) == {
        "key": KEY,
        "key_id": "1234abcd",
        "purpose": "PCK",
        "initiator_uid": uid.uid(ALICE, KMS, PERIOD, keys.number).hex(),
        "responder_uid": uid.uid(BOB, KMS, PERIOD, keys.number).hex(),
        "signature": "valid",
    }


def test_sdp_form_and_a_gmk_under_its_guk_id(keys: Keys) -> None:
    guk = keyids.guk_id(GMK, GMK_ID, BOB)
    args = [*keys.make_args(**{"--key": GMK.hex(), "--key-id": f"{guk:08x}"}), "--sdp"]
    made = mcic(*args)
    assert made.returncode == 0, made.stderr
    sdp = made.stdout.strip()
    assert sdp.startswith("mikey ")
    opened = mcic(*keys.open_args(f"a=key-mgmt:{sdp}"))
    assert opened.returncode == 0, opened.stderr
    result = json.loads(opened.stdout)
    assert (result["key"], result["key_id"], result["purpose"]) == (GMK.hex(), f"{guk:08x}", "GMK")
    assert result["gmk_id"] == f"{GMK_ID:08x}"


def _tamper(message: str, index: int) -> str:
    data = bytearray(base64.b64decode(message))
    data[index] ^= 0x01
    return base64.b64encode(bytes(data)).decode()


def _cut(message: str, count: int) -> str:
    return base64.b64encode(base64.b64decode(message)[:-count]).decode()


OPEN_ERRORS = [
    (
        "tampered signature",
        lambda k, m: k.open_args(_tamper(m, -100)),
        "signature invalid: signature-mismatch",
    ),
    (
        "tampered SAKKE data",
        lambda k, m: k.open_args(_tamper(m, -200)),
        "signature invalid: signature-mismatch",
    ),
    (
        "wrong KPAK",
        lambda k, m: k.open_args(m, **{"--kpak": k.other_kpak}),
        "signature invalid: signature-mismatch",
    ),
    ("wrong RSK", lambda k, m: k.open_args(m, **{"--rsk": k.other_rsk}), "SAKKE data refused: test-failed"),
    ("period off by one", lambda k, m: k.open_args(m, **{"--period-no": str(k.number + 1)}), "key period"),
    ("wrong initiator", lambda k, m: k.open_args(m, **{"--initiator-uri": BOB}), "IDRi is"),
    ("wrong KMS URI", lambda k, m: k.open_args(m, **{"--kms-uri": "kms.other"}), "IDRkmsi is"),
    ("truncated message", lambda k, m: k.open_args(_cut(m, 1)), "truncated SIGN payload"),
    ("not base64", lambda k, m: k.open_args("@@@"), "--message: not base64"),
    ("bad SDP", lambda k, m: k.open_args("mikey !!!!"), "not valid base64"),
    ("not hex", lambda k, m: k.open_args(m, **{"--kpak": "04zz"}), "--kpak: not an even number"),
    (
        "KPAK off curve",
        lambda k, m: k.open_args(m, **{"--kpak": "04" + "00" * 64}),
        "--kpak: the point is not",
    ),
    (
        "Z not a SAKKE point",
        lambda k, m: k.open_args(m, **{"--z": k.kpak}),
        "--z: SAKKE parameter set 1 point",
    ),
    ("bad period", lambda k, m: k.open_args(m, **{"--key-period": "0"}), "--key-period/--key-offset"),
    ("skew", lambda k, m: [*k.open_args(m), "--max-skew", "-1"], "T payload: time differs"),
]


@pytest.mark.parametrize(("case", "build", "words"), OPEN_ERRORS, ids=[case[0] for case in OPEN_ERRORS])
def test_open_refusals_are_one_line(
    keys: Keys,
    message: str,
    capsys: pytest.CaptureFixture[str],
    case: str,
    build: Callable[[Keys, str], list[str]],
    words: str,
) -> None:
    line = assert_one_error_line_in_process(*_run(capsys, build(keys, message)))
    assert words in line, (case, line)


MAKE_ERRORS = [
    ("short key", {"--key": "0011"}, "--key: 2 octets, expected 16"),
    ("bad key id", {"--key-id": "12345"}, "--key-id: key ID '12345' is not 8 hexadecimal digits"),
    ("unused purpose tag", {"--key-id": "f0000001"}, "unused purpose tag 15"),
    ("timestamp outside the period", {"--timestamp": "0"}, "--timestamp 0 lies in key period"),
    ("SSK of someone else", {"--ssk": "01"}, "initiator SSK/PVT refused"),
    ("PVT not hex", {"--pvt": "xyz"}, "--pvt: not an even number of hexadecimal digits"),
]


@pytest.mark.parametrize(("case", "changes", "words"), MAKE_ERRORS, ids=[case[0] for case in MAKE_ERRORS])
def test_make_refusals_are_one_line(
    keys: Keys, capsys: pytest.CaptureFixture[str], case: str, changes: dict[str, str], words: str
) -> None:
    line = assert_one_error_line_in_process(*_run(capsys, keys.make_args(**changes)))
    assert words in line, (case, line)


#: One refusal of each kind (signature, SAKKE, argument, make) also runs as a real process; concurrently,
#: since each start of ``mcic`` costs ~0.8 s of imports.
AS_PROCESSES = ["tampered signature", "wrong RSK", "not hex", "short key"]


def test_refusals_as_processes(keys: Keys, message: str) -> None:
    cases = [(case, build(keys, message), words) for case, build, words in OPEN_ERRORS]
    cases += [(case, keys.make_args(**changes), words) for case, changes, words in MAKE_ERRORS]
    chosen = [case for case in cases if case[0] in AS_PROCESSES]
    assert len(chosen) == len(AS_PROCESSES)
    running = [
        (
            case,
            words,
            subprocess.Popen(
                [str(MCIC), *arguments],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
            ),
        )
        for case, arguments, words in chosen
    ]
    for case, words, process in running:
        out, err = process.communicate(timeout=BOUND)
        line = assert_one_error_line(subprocess.CompletedProcess(process.args, process.returncode, out, err))
        assert words in line, (case, line)


# --- in process: the period arithmetic of make ------------------------------------------------------


def _run(capsys: pytest.CaptureFixture[str], arguments: list[str]) -> tuple[int, str, str]:
    status = main(arguments)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_make_puts_t_at_the_start_of_a_future_period(keys: Keys, capsys: pytest.CaptureFixture[str]) -> None:
    future = keys.number + 1
    ssk, pvt = eccsi.issue_ssk(keys.ksak, keys.kpak_point, uid.uid(ALICE, KMS, PERIOD, future))
    status, out, err = _run(
        capsys,
        keys.make_args(**{"--period-no": str(future), "--ssk": f"{ssk:064x}", "--pvt": _p256(pvt)}),
    )
    assert (status, err) == (0, ""), err
    data = base64.b64decode(out.strip())
    ntp_seconds, _ = mikey.parse_i_message(data).timestamp.utc_seconds()
    assert ntp_seconds == PERIOD.start_of(future)
    rsk = sakke.issue_rsk(keys.master, uid.uid(BOB, KMS, PERIOD, future))
    status, out, err = _run(
        capsys, keys.open_args(out.strip(), **{"--period-no": str(future), "--rsk": _sakke_point(rsk)})
    )
    assert (status, err) == (0, ""), err
    assert json.loads(out)["key"] == KEY
    # The current period's keys do not open it.
    status, out, err = _run(capsys, keys.open_args(base64.b64encode(data).decode()))
    assert status == 1
    assert err.startswith("mcic: error: T payload: time") and err.count("\n") == 1


def test_make_with_a_timestamp_inside_the_period(keys: Keys, capsys: pytest.CaptureFixture[str]) -> None:
    inside = uid.unix_from_ntp_seconds(PERIOD.start_of(keys.number)) + 12.5
    status, out, err = _run(capsys, keys.make_args(**{"--timestamp": str(inside), "--rand": "ab" * 16}))
    assert (status, err) == (0, ""), err
    message = mikey.parse_i_message(base64.b64decode(out.strip()))
    assert message.timestamp.utc_seconds()[1] == pytest.approx(inside, abs=1e-6)
    assert message.rand.value == bytes.fromhex("ab" * 16)
    status, out, err = _run(capsys, keys.open_args(out.strip()))
    assert (status, err) == (0, ""), err


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"--timestamp": "nan"}, "--timestamp: must be finite"),
        ({"--timestamp": "soon"}, "--timestamp: 'soon' is not a number"),
        ({"--period-no": "-1"}, "--period-no"),
        ({"--key-offset": "1.5"}, "--key-offset"),
        ({"--rand": "00"}, "RAND payload: 1 octets"),
        ({"--z": "04" + "00" * 255 + "01"}, "--z: the point is not on the curve"),
        # (0, 0) lies on E but has order 2: every encapsulation to it would be worthless.
        ({"--z": "04" + "00" * 256}, "--z: the KMS public key Z is not in the subgroup of order q"),
    ],
)
def test_more_make_refusals_in_process(
    keys: Keys, capsys: pytest.CaptureFixture[str], changes: dict[str, str], words: str
) -> None:
    line = assert_one_error_line_in_process(*_run(capsys, keys.make_args(**changes)))
    assert words in line, line
