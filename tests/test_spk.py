"""SPK management (TS 33.180 9.1, 5.5; WA-SP-01/02/05): the SPK file, the ring and its grace
periods, and ``mcic spk new|rotate`` run as a real process (``mcic_helpers``)."""

from __future__ import annotations

import base64
import math
import os
import re
import stat
import time
import tomllib
from pathlib import Path

import pytest

from mcic_helpers import assert_one_error_line, mcic
from mcinterconnect.crypto.keyids import Purpose, new_key_id
from mcinterconnect.deploy.config import load_deployment
from mcinterconnect.deploy.init import init_deployment
from mcinterconnect.mcinfo import MCPTT_INFO_TYPE, McpttInfo
from mcinterconnect.protect.spk import (
    MAX_ACCEPTED,
    SPK_EXPIRED,
    SPK_FILE_FORMAT,
    SPK_FILE_MISSING,
    SPK_FILE_MODE,
    SPK_KEY_PURPOSE,
    SPK_UNKNOWN,
    Spk,
    SpkError,
    SpkRing,
    SpkState,
)
from mcinterconnect.protect.xmlprotect import (
    XmlFault,
    XmlKeys,
    XmlProtectError,
    protect_message,
    unprotect_message,
)
from mcinterconnect.sip.message import Headers, SipRequest

NOW = 1_800_000_000.0
IDENTITY = "a.mc.example"


def message() -> SipRequest:
    info = McpttInfo(request_uri="sip:bob@b.mc.example", calling_user_id="sip:alice@a.mc.example")
    headers = Headers([("Content-Type", MCPTT_INFO_TYPE)])
    return SipRequest(
        headers=headers, body=info.to_xml(), method="MESSAGE", uri="sip:mcptt-server@b.mc.example"
    )


# ------------------------------------------------------------------ the ring


def test_generated_spk_is_16_octets_with_the_spk_purpose_tag() -> None:
    ring = SpkRing.generate(IDENTITY)
    assert len(ring.current.key) == 16
    assert ring.current.key_id >> 28 == Purpose.SPK == 3
    assert ring.state(ring.current.key_id, NOW) is SpkState.CURRENT
    assert ring.current.key.hex() not in repr(ring) and ring.current.key.hex() not in repr(ring.current)
    assert re.fullmatch(r"[0-9a-f]{8}", ring.current.check_value())
    assert ring.current.check_value() == Spk(ring.current.key_id, ring.current.key).check_value()
    assert ring.current.check_value() != SpkRing.generate(IDENTITY).current.check_value()


def test_keys_are_the_f14_keys_of_the_spk_and_its_kdf_identity() -> None:
    ring = SpkRing.generate(IDENTITY)
    spk = ring.current
    assert ring.current_keys() == XmlKeys.derive(spk.key, spk.key_id, IDENTITY)
    other = ring.with_kdf_identity("link-a-b")
    assert other.current_keys() == XmlKeys.derive(spk.key, spk.key_id, "link-a-b")
    assert other.current_keys() != ring.current_keys()
    assert ring.with_kdf_identity(None) is ring


def test_rotation_keeps_the_previous_spk_for_its_grace_period_only() -> None:
    ring = SpkRing.generate(IDENTITY)
    old = ring.current
    rotated = ring.rotated(now=NOW, grace=10)
    assert rotated.current.key_id != old.key_id
    [previous] = rotated.previous
    assert previous.spk == old and previous.until == NOW + 10
    assert rotated.accepted(NOW) == [rotated.current.key_id, old.key_id]
    # Within the grace period the previous SPK resolves to its own keys; at its end it is expired.
    assert rotated.resolve(old.key_id, NOW + 9.9) == XmlKeys.derive(old.key, old.key_id, IDENTITY)
    assert rotated.state(old.key_id, NOW + 10) is SpkState.EXPIRED
    assert rotated.resolve(old.key_id, NOW + 10) is None
    with pytest.raises(SpkError) as raised:
        rotated.keys(old.key_id, NOW + 11)
    assert raised.value.reason == SPK_EXPIRED
    assert f"SPK-ID {old.name} stopped being accepted at " in str(raised.value)
    # The current one is never refused, and protects what is sent.
    assert rotated.current_keys().key_id == rotated.current.key_id


def test_grace_end_is_rounded_up_to_the_second() -> None:
    rotated = SpkRing.generate(IDENTITY).rotated(now=NOW + 0.25, grace=1.5)
    assert rotated.previous[0].until == math.ceil(NOW + 1.75) == NOW + 2


def test_an_expired_spk_id_stays_known_as_expired_after_the_next_rotation() -> None:
    ring = SpkRing.generate(IDENTITY)
    first = ring.current.key_id
    once = ring.rotated(now=NOW, grace=5)
    twice = once.rotated(now=NOW + 60, grace=5)
    assert [p.spk.key_id for p in twice.previous] == [once.current.key_id]
    assert [r.key_id for r in twice.retired] == [first]
    assert twice.state(first, NOW + 60) is SpkState.EXPIRED
    assert twice.refusal(first, NOW + 60)[0] == SPK_EXPIRED
    # The retired entry holds no key: the file no longer has it.
    assert ring.current.key.hex() not in twice.to_text() and _b64(ring.current.key) not in twice.to_text()


def test_unknown_and_wrong_purpose_key_ids_have_their_own_reasons() -> None:
    ring = SpkRing.generate(IDENTITY)
    unknown = new_key_id(Purpose.SPK)
    assert ring.state(unknown, NOW) is SpkState.UNKNOWN
    assert ring.refusal(unknown, NOW) == (
        SPK_UNKNOWN,
        f"SPK-ID {unknown:08x} is not configured for this link",
    )
    csk = new_key_id(Purpose.CSK)
    assert ring.state(csk, NOW) is SpkState.WRONG_PURPOSE
    assert ring.refusal(csk, NOW)[0] == SPK_KEY_PURPOSE
    with pytest.raises(SpkError) as raised:
        ring.keys(csk, NOW)
    assert raised.value.reason == SPK_KEY_PURPOSE
    asked: list[int] = []
    assert ring.resolver(NOW, asked)(unknown) is None
    assert asked == [unknown]


def test_a_spk_whose_id_has_another_purpose_tag_is_refused() -> None:
    with pytest.raises(SpkError) as raised:
        Spk(new_key_id(Purpose.CSK), bytes(16))
    assert raised.value.reason == SPK_KEY_PURPOSE
    with pytest.raises(SpkError):
        Spk(new_key_id(Purpose.SPK), bytes(32))


def test_rotations_within_the_grace_period_accept_at_most_max_accepted() -> None:
    ring = SpkRing.generate(IDENTITY)
    for step in range(MAX_ACCEPTED + 3):
        ring = ring.rotated(now=NOW + step, grace=3600)
    assert len(ring.accepted(NOW + 20)) == MAX_ACCEPTED
    assert len(ring.retired) == 4  # MAX_ACCEPTED + 4 SPKs made in all
    assert all(ring.state(r.key_id, NOW + 20) is SpkState.EXPIRED for r in ring.retired)


@pytest.mark.parametrize("grace", [-1.0, math.inf, math.nan, 31 * 86400.0])
def test_rotation_grace_out_of_range_is_refused(grace: float) -> None:
    with pytest.raises(SpkError):
        SpkRing.generate(IDENTITY).rotated(now=NOW, grace=grace)


def test_xml_protection_across_a_rotation(tmp_path: Path) -> None:
    """Both sides load the same file; a message protected before a rotation still opens during
    the grace period and is refused (unknown key) after it."""
    path = tmp_path / "spk.key"
    SpkRing.generate(IDENTITY).save(path)
    sender = SpkRing.load(path)
    before = message()
    protect_message(before, sender.current_keys())
    sender.rotated(now=NOW, grace=30).save(path)
    receiver = SpkRing.load(path)
    during = before.copy()
    found = unprotect_message(during, receiver.resolver(NOW + 29))
    assert found.key_ids == {sender.current.key_id} and found.was_signed and found.was_encrypted
    assert b"sip:alice@a.mc.example" in during.body
    after = before.copy()
    asked: list[int] = []
    with pytest.raises(XmlProtectError) as raised:
        unprotect_message(after, receiver.resolver(NOW + 30, asked))
    assert raised.value.reason is XmlFault.UNKNOWN_KEY
    assert receiver.refusal(asked[-1], NOW + 30)[0] == SPK_EXPIRED
    fresh = message()
    protect_message(fresh, receiver.current_keys())
    assert unprotect_message(fresh, receiver.resolver(NOW + 1000)).key_ids == {receiver.current.key_id}


# ------------------------------------------------------------------ the file


def _b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def test_file_round_trip_with_mode_0600_even_over_a_wider_file(tmp_path: Path) -> None:
    path = tmp_path / "spk.key"
    path.write_text("old")
    path.chmod(0o644)
    ring = SpkRing.generate(IDENTITY).rotated(now=NOW, grace=60).rotated(now=NOW + 120, grace=60)
    ring.save(path, comment="link A <-> B")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert text.startswith("# link A <-> B\n") and "\nMCIC-SPK-1\n" in text
    loaded = SpkRing.load(path)
    assert loaded.to_text() == ring.to_text()
    assert (
        loaded.current == ring.current and loaded.previous == ring.previous and loaded.retired == ring.retired
    )
    assert loaded.kdf_identity == IDENTITY
    assert not [name for name in os.listdir(tmp_path) if name != "spk.key"]  # no temporary left
    assert SpkRing.load(path, kdf_identity="other").kdf_identity == "other"


def test_missing_file_and_group_readable_file_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SpkError) as raised:
        SpkRing.load(tmp_path / "absent.key")
    assert raised.value.reason == SPK_FILE_MISSING
    assert str(raised.value) == f"{tmp_path / 'absent.key'}: SPK file not found"
    path = tmp_path / "spk.key"
    SpkRing.generate(IDENTITY).save(path)
    path.chmod(0o640)
    with pytest.raises(SpkError) as raised:
        SpkRing.load(path)
    assert raised.value.reason == SPK_FILE_MODE


KEY = _b64(bytes(range(16)))
SPK_ID = "31223344"
CSK_ID = "21223344"
HEAD = f"MCIC-SPK-1\nkdf-identity a\ncurrent {SPK_ID} {KEY}\n"


@pytest.mark.parametrize(
    ("text", "reason", "fragment"),
    [
        ("", SPK_FILE_FORMAT, "empty"),
        ("MCIC-SPK-2\n", SPK_FILE_FORMAT, "line 1: expected MCIC-SPK-1 first"),
        ("MCIC-SPK-1\nkdf-identity a\n", SPK_FILE_FORMAT, "no current SPK"),
        (f"MCIC-SPK-1\ncurrent {SPK_ID} {KEY}\n", SPK_FILE_FORMAT, "no kdf-identity line"),
        (
            f"MCIC-SPK-1\nkdf-identity a\ncurrent {SPK_ID} {KEY}\ncurrent 31223345 {KEY}\n",
            SPK_FILE_FORMAT,
            "line 4",
        ),
        (f"MCIC-SPK-1\nkdf-identity a\ncurrent {CSK_ID} {KEY}\n", SPK_KEY_PURPOSE, "wrong purpose tag"),
        (f"MCIC-SPK-1\nkdf-identity a\ncurrent 3122334 {KEY}\n", SPK_FILE_FORMAT, "not 8 hexadecimal digits"),
        ("MCIC-SPK-1\nkdf-identity a\ncurrent 31223344 AAEC!!\n", SPK_FILE_FORMAT, "not base64"),
        (f"MCIC-SPK-1\nkdf-identity a\ncurrent {SPK_ID} {_b64(bytes(32))}\n", SPK_FILE_FORMAT, "16 octets"),
        (
            f"MCIC-SPK-1\nkdf-identity a\ncurrent {SPK_ID} {KEY}\nprevious 31223345 {KEY} until tomorrow\n",
            SPK_FILE_FORMAT,
            "is not a UTC time",
        ),
        (
            f"{HEAD}retired {SPK_ID} until 2026-01-01T00:00:00Z\n",
            SPK_FILE_FORMAT,
            "appears twice",
        ),
        (
            f"MCIC-SPK-1\nkdf-identity a\ncurrent {SPK_ID} {KEY}\nnext 31223345 {KEY}\n",
            SPK_FILE_FORMAT,
            "'next'",
        ),
        (
            f"{HEAD}retired {CSK_ID} until 2026-01-01T00:00:00Z\n",
            SPK_KEY_PURPOSE,
            "line 4",
        ),
    ],
)
def test_bad_files_are_refused_in_one_line_without_key_bytes(
    tmp_path: Path, text: str, reason: str, fragment: str
) -> None:
    path = tmp_path / "spk.key"
    path.write_text(text)
    path.chmod(0o600)
    with pytest.raises(SpkError) as raised:
        SpkRing.load(path)
    message_text = str(raised.value)
    assert raised.value.reason == reason, message_text
    assert fragment in message_text
    assert "\n" not in message_text and KEY not in message_text
    assert message_text.startswith(str(path))


# ------------------------------------------------------------------ mcic spk


def _spk_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.startswith("spk = ")]


def test_mcic_spk_new_writes_the_same_spk_on_both_sides(tmp_path: Path) -> None:
    target = tmp_path / "d"
    init_deployment(target)
    result = mcic("spk", "new", target, "--system", "A", "--partner", "B", "--grace", "120")
    assert result.returncode == 0, result.stderr
    a_file, b_file = target / "a" / "keys" / "spk-b.key", target / "b" / "keys" / "spk-a.key"
    assert a_file.read_bytes() == b_file.read_bytes()
    for path in (a_file, b_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    ring = SpkRing.load(a_file)
    assert ring.kdf_identity == "a.mc.example" and not ring.previous
    # The key is never printed: its SPK-ID and check value are.
    assert _b64(ring.current.key) not in result.stdout + result.stderr
    assert f"SPK-ID {ring.current.name} (check value {ring.current.check_value()})" in result.stdout
    for letter, other in (("a", "B"), ("b", "A")):
        assert f"{target / letter / 'system.toml'}: partner {other}: spk set" in result.stdout
        [line] = _spk_lines(target / letter / "system.toml")
        assert tomllib.loads(line)["spk"] == {
            "file": f"keys/spk-{other.lower()}.key",
            "required": True,
            "kdf_identity": "a.mc.example",
            "grace": 120,
        }
    deployment = load_deployment(target)
    for config in deployment.systems:
        [agreement] = config.partner
        assert agreement.spk is not None and agreement.spk.required and agreement.spk.grace == 120
        assert SpkRing.load(agreement.spk.file).current == ring.current
    # The commented example that init wrote was replaced, not duplicated.
    assert "# spk = " not in (target / "a" / "system.toml").read_text()
    # A second new is refused: the link has its SPK.
    line = assert_one_error_line(mcic("spk", "new", target, "--system", "B", "--partner", "A"))
    assert "already has an SPK (keys/spk-a.key): use mcic spk rotate" in line


def test_mcic_spk_rotate_keeps_the_previous_spk_for_the_grace_period(tmp_path: Path) -> None:
    target = tmp_path / "d"
    init_deployment(target, spk=True)
    a_file, b_file = target / "a" / "keys" / "spk-b.key", target / "b" / "keys" / "spk-a.key"
    before = SpkRing.load(a_file)
    result = mcic("spk", "rotate", target, "--system", "B", "--partner", "A", "--grace", "30")
    assert result.returncode == 0, result.stderr
    assert a_file.read_bytes() == b_file.read_bytes()
    after = SpkRing.load(b_file)
    assert after.current.key_id != before.current.key_id
    [previous] = after.previous
    assert previous.spk == before.current
    assert 0 < previous.until - time.time() <= 31
    assert f"previous SPK-ID {before.current.name} accepted until " in result.stdout
    assert "(30 s grace)" in result.stdout
    assert _b64(after.current.key) not in result.stdout
    # Without --grace the agreement's spk.grace (3600 s from init) applies.
    result = mcic("spk", "rotate", target, "--system", "A", "--partner", "B")
    assert result.returncode == 0, result.stderr
    assert "(3600 s grace)" in result.stdout
    third = SpkRing.load(a_file)
    assert [p.spk.key_id for p in third.previous] == [after.current.key_id, before.current.key_id]


def test_mcic_spk_rotate_refuses_when_the_sides_differ(tmp_path: Path) -> None:
    target = tmp_path / "d"
    init_deployment(target, spk=True)
    b_file = target / "b" / "keys" / "spk-a.key"
    SpkRing.generate("a.mc.example").save(b_file)
    a_before = (target / "a" / "keys" / "spk-b.key").read_bytes()
    line = assert_one_error_line(mcic("spk", "rotate", target, "--system", "A", "--partner", "B"))
    assert "the two sides hold different SPKs" in line and "nothing rotated" in line
    assert (target / "a" / "keys" / "spk-b.key").read_bytes() == a_before


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        (("rotate", "--system", "A", "--partner", "B"), "partner B has no SPK: use mcic spk new"),
        (("new", "--system", "A", "--partner", "C"), "no [[partner]] named 'C' (known: B)"),
        (("new", "--system", "Z", "--partner", "B"), "no system named 'Z'"),
        (("new", "--system", "A", "--partner", "B", "--grace", "-5"), "--grace: -5.0 is not in 0..2592000"),
    ],
)
def test_mcic_spk_errors_are_one_line(tmp_path: Path, arguments: tuple[str, ...], fragment: str) -> None:
    target = tmp_path / "d"
    init_deployment(target)
    action, *rest = arguments
    line = assert_one_error_line(mcic("spk", action, target, *rest))
    assert fragment in line
    assert not (target / "a" / "keys" / "spk-b.key").exists()


def test_mcic_spk_new_with_only_one_system_says_what_to_give_the_partner(tmp_path: Path) -> None:
    target = tmp_path / "d"
    init_deployment(target)
    (target / "deployment.toml").write_text('[deployment]\nname = "a only"\nsystems = ["a/system.toml"]\n')
    result = mcic("spk", "new", target, "--system", "A", "--partner", "B")
    assert result.returncode == 0, result.stderr
    assert not (target / "b" / "keys" / "spk-a.key").exists()
    ring = SpkRing.load(target / "a" / "keys" / "spk-b.key")
    [instruction] = [line for line in result.stdout.splitlines() if line.startswith("give partner B")]
    assert str(target / "a" / "keys" / "spk-b.key") in instruction
    assert 'kdf_identity = "a.mc.example"' in instruction and ring.current.name in instruction
    assert load_deployment(target).systems[0].partner[0].spk is not None
    result = mcic("spk", "rotate", target, "--system", "A", "--partner", "B", "--grace", "10")
    assert result.returncode == 0, result.stderr
    assert "give partner B the new file" in result.stdout


def test_mcic_init_spk_shares_one_spk_and_combines_with_explicit(tmp_path: Path) -> None:
    target = tmp_path / "d"
    result = mcic("init", target, "--explicit", "--spk")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"deployment written: {target / 'deployment.toml'} "
        "(explicit authentication: EAR both ways; SPK protection of the A<->B link)"
    )
    assert (target / "a" / "keys" / "spk-b.key").read_bytes() == (
        target / "b" / "keys" / "spk-a.key"
    ).read_bytes()
    for config in load_deployment(target).systems:
        [agreement] = config.partner
        assert agreement.explicit_inbound and agreement.spk is not None
        assert agreement.spk.kdf_identity == "a.mc.example" and agreement.spk.required
        assert agreement.spk.grace == 3600
    plain = tmp_path / "plain"
    init_deployment(plain)
    assert all(p.spk is None for config in load_deployment(plain).systems for p in config.partner)
    assert not list((plain / "a" / "keys").glob("spk-*"))
