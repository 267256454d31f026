"""MIKEY-SAKKE I_MESSAGEs between two interconnected systems (spec/crypto.md §7 "Round trips").

The initiator is provisioned by its home KMS, the responder by the partner's KMS; each side knows
the other KMS only through the certificate imported by manual cross-certification (WA-IC-19,
``partners/<x>-kms.xml`` written by ``mcic init``).  The message is built in one system with the
partner certificate it imported, and opened in the other with the certificate that one imported.
"""

from __future__ import annotations

import functools
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mcinterconnect.crypto import keyids, mikey, uid
from mcinterconnect.crypto.keyids import Purpose
from mcinterconnect.crypto.kms import KeySet, Kms, KmsCertificate, validate_key_set
from mcinterconnect.deploy.config import SystemConfig, load_deployment
from mcinterconnect.deploy.init import init_deployment
from mcinterconnect.deploy.pki import (
    issue_certificate,
    load_certificate,
    load_private_key,
    write_pem,
    write_private_key,
)
from mcinterconnect.deploy.runner import start_system
from mcinterconnect.services.kms import fetch_cert_cache, fetch_key_sets, read_certificate, read_kms
from mcinterconnect.tlsprofile import client_context
from system_helpers import run as run_bounded

ALICE = "sip:alice@a.mc.example"
BOB = "sip:bob@b.mc.example"


@dataclass(frozen=True)
class Side:
    """One system as its own users see it: its KMS and the partner KMS certificate it imported."""

    config: SystemConfig
    kms: Kms
    imported: KmsCertificate

    @property
    def own(self) -> KmsCertificate:
        return self.kms.certificate


@pytest.fixture(scope="module")
def sides(tmp_path_factory: pytest.TempPathFactory) -> tuple[Side, Side]:
    directory = tmp_path_factory.mktemp("deployment")
    a, b = load_deployment(init_deployment(directory)).systems

    def side(config: SystemConfig) -> Side:
        assert config.kms is not None and config.partner[0].kms_certificate is not None
        return Side(config, read_kms(config.kms), read_certificate(config.partner[0].kms_certificate))

    return side(a), side(b)


def key_set(side: Side, user: str, when: float) -> KeySet:
    number = side.own.key_period.number_at(uid.ntp_seconds(when))
    [provisioned] = side.kms.provision(user, [number])
    validate_key_set(provisioned, side.own, user)
    return provisioned


def make(sender: Side, initiator: KeySet, responder_uri: str, ssv: bytes, when: float) -> bytes:
    """Built in the sender's system: its own KMS for the initiator, the imported one for the responder."""
    return mikey.make_i_message(
        ssv=ssv,
        key_id=keyids.new_key_id(Purpose.PCK),
        initiator_uri=initiator.user_uri,
        responder_uri=responder_uri,
        initiator_kms_uri=sender.own.kms_uri,
        responder_kms_uri=sender.imported.kms_uri,
        initiator_period=sender.own.key_period,
        responder_period=sender.imported.key_period,
        ssk=initiator.ssk,
        pvt=initiator.pvt,
        kpak=sender.own.pub_auth_key,
        responder_z=sender.imported.pub_enc_key,
        timestamp=when,
    )


def open_(
    receiver: Side, responder: KeySet, data: bytes, when: float, initiator: KmsCertificate | None = None
) -> mikey.OpenedKey:
    """Opened in the receiver's system: the imported certificate for the initiator's KMS."""
    sender_kms = initiator if initiator is not None else receiver.imported
    return mikey.open_i_message(
        data,
        initiator_kpak=sender_kms.pub_auth_key,
        initiator_period=sender_kms.key_period,
        responder_period=receiver.own.key_period,
        responder_rsk=responder.rsk,
        responder_z=receiver.own.pub_enc_key,
        expected_responder_uri=responder.user_uri,
        expected_initiator_kms_uri=sender_kms.kms_uri,
        expected_responder_kms_uri=receiver.own.kms_uri,
        period_number=responder.key_period_no,
        now=when,
    )


@pytest.mark.parametrize("direction", ["A to B", "B to A"])
def test_i_message_across_systems(sides: tuple[Side, Side], direction: str) -> None:
    a, b = sides
    sender, receiver, initiator_uri, responder_uri = (
        (a, b, ALICE, BOB) if direction == "A to B" else (b, a, BOB, ALICE)
    )
    when = time.time()
    initiator = key_set(sender, initiator_uri, when)
    responder = key_set(receiver, responder_uri, when)
    ssv = secrets.token_bytes(16)
    data = make(sender, initiator, responder_uri, ssv, when)
    opened = open_(receiver, responder, data, when)
    assert opened.key == ssv
    assert opened.initiator_uri == initiator_uri and opened.responder_uri == responder_uri
    assert opened.purpose is Purpose.PCK
    assert opened.initiator_uid == initiator.user_id and opened.responder_uid == responder.user_id


def test_the_imported_certificates_are_the_partners_own(sides: tuple[Side, Side]) -> None:
    a, b = sides
    assert a.imported == b.own.as_role("External")
    assert b.imported == a.own.as_role("External")


def test_a_kms_that_was_not_imported_is_not_trusted(sides: tuple[Side, Side]) -> None:
    """An impostor KMS with A's URI provisions 'alice': B, holding A's real certificate, refuses."""
    a, b = sides
    impostor = Side(a.config, Kms.create(a.own.kms_uri), a.imported)
    when = time.time()
    forged = key_set(impostor, ALICE, when)
    responder = key_set(b, BOB, when)
    data = make(impostor, forged, BOB, secrets.token_bytes(16), when)
    with pytest.raises(mikey.MikeyError) as info:
        open_(b, responder, data, when)
    assert info.value.reason == "signature-invalid"


def test_the_responder_key_of_another_period_does_not_open(sides: tuple[Side, Side]) -> None:
    a, b = sides
    when = time.time()
    data = make(a, key_set(a, ALICE, when), BOB, secrets.token_bytes(16), when)
    next_period = key_set(b, BOB, when + b.own.user_key_period)
    with pytest.raises(mikey.MikeyError) as info:
        open_(b, next_period, data, when)
    assert info.value.reason == "key-period"


#: Every scenario on a fresh event loop, bounded in time (``system_helpers.run``).
run = functools.partial(run_bounded, deadline=20.0)


def _client_tls(config: SystemConfig, user: str, directory: Path) -> Any:
    folder = config.source.parent
    cert, key = issue_certificate(
        load_certificate(folder / "pki" / "ca.crt"),
        load_private_key(folder / "pki" / "ca.key"),
        [],
        uris=[user],
        common_name=user.removeprefix("sip:"),
        days=1,
        server=False,
    )
    stem = user.removeprefix("sip:").replace("@", "_")
    write_pem(directory / f"{stem}.crt", cert)
    write_private_key(directory / f"{stem}.key", key)
    return client_context(
        trust_anchors=[folder / "pki" / "ca.crt"],
        cert_file=directory / f"{stem}.crt",
        key_file=directory / f"{stem}.key",
    )


def test_keys_and_partner_certificates_from_the_running_kms_services(
    sides: tuple[Side, Side], tmp_path: Path
) -> None:
    """Alice gets her keys and B's KMS certificate from KMS A, Bob his keys and A's certificate
    from KMS B (HTTPS, mutual TLS); Alice's message opens at Bob's."""
    a, b = sides
    alice_tls = _client_tls(a.config, ALICE, tmp_path)
    bob_tls = _client_tls(b.config, BOB, tmp_path)

    async def scenario() -> None:
        systems = [await start_system(a.config), await start_system(b.config)]
        try:
            assert a.config.kms is not None and b.config.kms is not None
            url_a = f"https://{a.config.kms.listen.host}:{a.config.kms.listen.port}"
            url_b = f"https://{b.config.kms.listen.host}:{b.config.kms.listen.port}"
            alice_sets = await fetch_key_sets(
                url_a, alice_tls, user_uri=ALICE, server_hostname=a.config.kms.uri
            )
            [b_for_alice] = await fetch_cert_cache(url_a, alice_tls, server_hostname=a.config.kms.uri)
            bob_sets = await fetch_key_sets(url_b, bob_tls, user_uri=BOB, server_hostname=b.config.kms.uri)
            [a_for_bob] = await fetch_cert_cache(url_b, bob_tls, server_hostname=b.config.kms.uri)
        finally:
            for system in systems:
                await system.close()
        when = time.time()
        current = a.own.key_period.number_at(uid.ntp_seconds(when))
        [alice_now] = [ks for ks in alice_sets if ks.key_period_no == current]
        [bob_now] = [ks for ks in bob_sets if ks.key_period_no == current]
        alice_side = Side(a.config, a.kms, b_for_alice)
        bob_side = Side(b.config, b.kms, a_for_bob)
        ssv = secrets.token_bytes(16)
        data = make(alice_side, alice_now, BOB, ssv, when)
        assert open_(bob_side, bob_now, data, when).key == ssv

    run(scenario())
