"""Border policy decisions (policy.py): every reason code, its status, partner and detail.

Entry point (WA-IC-07, WA-IC-11, BC-2/3/5) through ``check_inbound`` with the built-in implicit
authentication; exit point (TS 24.379 6.8.2 steps 1-2) through ``choose_partner`` and
``check_outbound``.  System A (``a.mc.example``) is "this" system; B is the partner whose agreement
is checked; C is another partner of A (a third system as seen from B's agreement).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mcinterconnect.border.agreement import PartnerAgreement
from mcinterconnect.border.policy import (
    ALLOWED,
    CALLING_USER_MISSING,
    CALLING_USER_NOT_PARTNER,
    CALLING_USER_SPOOFED,
    METHOD_NOT_ALLOWED,
    NO_AGREEMENT,
    REGISTER_REFUSED,
    SERVICE_NOT_AUTHORIZED,
    SOURCE_MALFORMED,
    SOURCE_MISSING,
    SOURCE_NOT_PARTNER,
    SOURCE_SPOOFED,
    TARGET_NOT_LOCAL,
    Decision,
    ImplicitAuthentication,
    check_inbound,
    check_outbound,
    choose_partner,
)
from mcinterconnect.identity import DomainMap
from mcinterconnect.mcinfo import MCPTT_INFO_TYPE, McpttInfo, find_mcptt_info
from mcinterconnect.sip.message import Headers, SipRequest

OWN = "a.mc.example"
PARTNER_B = "b.mc.example"
PARTNER_C = "c.mc.example"
UNKNOWN = "d.mc.example"

DOMAINS = DomainMap([OWN], {"B": [PARTNER_B], "C": [PARTNER_C]})


def agreement(name: str = "B", domain: str = PARTNER_B, methods: list[str] | None = None) -> PartnerAgreement:
    fields: dict[str, object] = {
        "name": name,
        "domains": [domain],
        "is_proxy_host": f"isproxy.{domain}",
        "is_proxy_address": "tls://127.0.0.1:5061",
        "trust_anchors": [Path(f"{name.lower()}-ca.crt")],
        "psis": {"mcptt": f"sip:mcptt-server@{domain}"},
    }
    if methods is not None:
        fields["allowed_methods"] = methods
    return PartnerAgreement.model_validate(fields)


AGREEMENT_B = agreement()
AGREEMENT_C = agreement("C", PARTNER_C)

#: The identity B's exit point asserts (TS 24.379 6.8.2 step 3).
B_GATEWAY = f"<sip:isproxy@{PARTNER_B}>"


def request(
    method: str,
    *,
    pai: list[str] | None = None,
    info: McpttInfo | None = None,
    to_tag: str | None = None,
    uri: str = f"sip:mcptt-server@{OWN}",
) -> SipRequest:
    """A request as A's entry point sees it after B's exit point (B's topology already hidden)."""
    to = f"<sip:alice@{OWN}>" + (f";tag={to_tag}" if to_tag else "")
    headers = Headers(
        [
            ("Via", f"SIP/2.0/TLS isproxy.{PARTNER_B}:5061;branch=z9hG4bKpolicy1;rport"),
            ("Max-Forwards", "69"),
            ("From", f"<sip:bob@{PARTNER_B}>;tag=f1"),
            ("To", to),
            ("Call-ID", "Xk3J9aPq0"),
            ("CSeq", f"7 {method}"),
        ]
    )
    for value in [B_GATEWAY] if pai is None else pai:
        headers.add("P-Asserted-Identity", value)
    body = b""
    if info is not None:
        headers.add("Content-Type", MCPTT_INFO_TYPE)
        body = info.to_xml()
    return SipRequest(headers=headers, body=body, method=method, uri=uri)


def inbound(req: SipRequest, agreement_: PartnerAgreement = AGREEMENT_B) -> Decision:
    # The IS proxy reads the body first and hands the result to the policy; do the same.
    return check_inbound(req, agreement_, DOMAINS, find_mcptt_info(req), ImplicitAuthentication())


def caller_info(
    caller: str | None = f"sip:bob@{PARTNER_B}",
    target: str | None = f"sip:alice@{OWN}",
    group: str | None = None,
) -> McpttInfo:
    return McpttInfo(request_uri=target, calling_user_id=caller, calling_group_id=group)


def assert_refused(decision: Decision, reason: str, detail: str, partner: str | None = "B") -> None:
    assert (decision.allowed, decision.reason, decision.detail) == (False, reason, detail)
    assert decision.status == 403
    assert decision.partner == partner


def assert_allowed(decision: Decision, partner: str = "B") -> None:
    assert (decision.allowed, decision.reason, decision.status, decision.partner) == (
        True,
        ALLOWED,
        200,
        partner,
    )


# ------------------------------------------------------------------------------ Decision


def test_decision_constructors_and_warning_text() -> None:
    refused = Decision.refuse(NO_AGREEMENT, "no interconnection agreement covers c.example")
    assert (refused.allowed, refused.status, refused.partner) == (False, 403, None)
    assert refused.warning_text(179) == (
        "179 service not authorized with the interconnected system "
        "(no-agreement: no interconnection agreement covers c.example)"
    )
    assert SERVICE_NOT_AUTHORIZED == "service not authorized with the interconnected system"
    not_found = Decision.refuse("unknown-psi", "x", "B", status=404)
    assert (not_found.status, not_found.partner) == (404, "B")
    allowed = Decision.allow("B", "why")
    assert (allowed.allowed, allowed.reason, allowed.detail, allowed.status) == (True, ALLOWED, "why", 200)


# ------------------------------------------------------------------- inbound: BC-2, BC-5


def test_register_refused_from_partner_before_anything_else() -> None:
    class MustNotRun:
        def check(self, *args: object) -> Decision:
            raise AssertionError("authenticator consulted for a REGISTER")

    register = request("REGISTER", pai=[])
    decision = check_inbound(register, AGREEMENT_B, DOMAINS, None, MustNotRun())
    assert_refused(
        decision, REGISTER_REFUSED, "REGISTER is never accepted from a partner: clients register at home"
    )


def test_method_not_in_agreement() -> None:
    narrow = agreement(methods=["INVITE", "ACK", "BYE", "CANCEL", "MESSAGE"])
    assert_refused(
        inbound(request("SUBSCRIBE"), narrow), METHOD_NOT_ALLOWED, "SUBSCRIBE is not allowed by the agreement"
    )
    # The same request passes an agreement that allows it (the default: all but REGISTER).
    assert_allowed(inbound(request("SUBSCRIBE")))


def test_method_check_precedes_authentication() -> None:
    narrow = agreement(methods=["MESSAGE"])
    decision = inbound(request("OPTIONS", pai=[f"<sip:mallory@{OWN}>"]), narrow)
    assert decision.reason == METHOD_NOT_ALLOWED


# ------------------------------------------------------------- inbound: source (BC-3)


@pytest.mark.parametrize("pai", [[], ["<tel:+15550100>"]], ids=["absent", "tel-only"])
def test_initial_request_without_sip_asserted_identity(pai: list[str]) -> None:
    assert_refused(
        inbound(request("MESSAGE", pai=pai, info=caller_info())),
        SOURCE_MISSING,
        "no P-Asserted-Identity names the source",
    )


def test_asserted_identity_in_own_domain_is_spoofed() -> None:
    assert_refused(
        inbound(request("MESSAGE", pai=[f"<sip:mcptt-server@{OWN}>"], info=caller_info())),
        SOURCE_SPOOFED,
        f"source sip:mcptt-server@{OWN} claims this system's own domain",
    )


def test_any_asserted_identity_in_own_domain_is_spoofed() -> None:
    # A genuine partner identity first does not excuse a second, local one.
    decision = inbound(request("MESSAGE", pai=[B_GATEWAY, f"<sip:alice@{OWN}>"], info=caller_info()))
    assert_refused(decision, SOURCE_SPOOFED, f"source sip:alice@{OWN} claims this system's own domain")


@pytest.mark.parametrize("domain", [UNKNOWN, PARTNER_C], ids=["unknown-system", "other-partner"])
def test_asserted_identity_not_of_this_partner(domain: str) -> None:
    decision = inbound(request("MESSAGE", pai=[f"<sip:isproxy@{domain}>"], info=caller_info()))
    assert_refused(
        decision, SOURCE_NOT_PARTNER, f"source sip:isproxy@{domain} is not an external MC service ID of B"
    )


def test_asserted_identity_of_partner_accepted_under_that_agreement_only() -> None:
    message = request(
        "MESSAGE", pai=[f"<sip:isproxy@{PARTNER_C}>"], info=caller_info(f"sip:carl@{PARTNER_C}")
    )
    assert_allowed(inbound(message, AGREEMENT_C), "C")
    assert inbound(message, AGREEMENT_B).reason == SOURCE_NOT_PARTNER


def test_tel_asserted_identity_beside_sip_one_is_ignored() -> None:
    decision = inbound(request("MESSAGE", pai=["<tel:+15550100>", B_GATEWAY], info=caller_info()))
    assert_allowed(decision)


# --------------------------------------------------------- inbound: body identities (WA-IC-11.3)


def test_partner_user_message_allowed() -> None:
    decision = inbound(request("MESSAGE", info=caller_info()))
    assert_allowed(decision)
    assert decision.detail == ""


def test_message_without_mcptt_info() -> None:
    assert_refused(
        inbound(request("MESSAGE")),
        CALLING_USER_MISSING,
        "MESSAGE from a partner carries no mcptt-info calling user",
    )


def test_invite_with_mcptt_info_but_no_calling_user() -> None:
    assert_refused(
        inbound(request("INVITE", info=caller_info(caller=None))),
        CALLING_USER_MISSING,
        "INVITE from a partner names no calling user",
    )


def test_requests_a_user_does_not_originate_need_no_calling_user() -> None:
    # OPTIONS from the partner's server: no body, no calling user, still allowed.
    assert_allowed(inbound(request("OPTIONS")))


def test_calling_user_of_own_domain_without_partner_group_is_spoofed() -> None:
    assert_refused(
        inbound(request("INVITE", info=caller_info(f"sip:alice2@{OWN}"))),
        CALLING_USER_SPOOFED,
        f"calling user sip:alice2@{OWN} claims this system's own domain",
    )


@pytest.mark.parametrize(
    "group", [f"sip:grp@{OWN}", f"sip:grp@{PARTNER_C}", f"sip:grp@{UNKNOWN}", "tel:+15550100"]
)
def test_calling_user_of_own_domain_with_a_group_not_homed_in_the_partner_is_spoofed(group: str) -> None:
    decision = inbound(request("INVITE", info=caller_info(f"sip:alice2@{OWN}", group=group)))
    assert_refused(
        decision, CALLING_USER_SPOOFED, f"calling user sip:alice2@{OWN} claims this system's own domain"
    )


def test_calling_user_of_own_domain_in_partner_homed_group_call_is_allowed() -> None:
    # interconnection.md §9.2: B's controlling function invites A's members of B's group, with
    # mcptt-calling-user-id = the caller, who may be a user of A.
    info = caller_info(f"sip:alice2@{OWN}", target=f"sip:alice@{OWN}", group=f"sip:grp1@{PARTNER_B}")
    decision = inbound(request("INVITE", info=info))
    assert_allowed(decision)


def test_partner_group_exemption_holds_for_group_calls_only() -> None:
    # A MESSAGE naming a B-homed calling group is still one partner user's request: a calling
    # user of this system there is spoofed, and so is one of a third system.
    group = f"sip:grp1@{PARTNER_B}"
    local = f"sip:chief@{OWN}"
    assert_refused(
        inbound(request("MESSAGE", info=caller_info(local, group=group))),
        CALLING_USER_SPOOFED,
        f"calling user {local} claims this system's own domain",
    )
    third = f"sip:carl@{PARTNER_C}"
    assert_refused(
        inbound(request("MESSAGE", info=caller_info(third, group=group))),
        CALLING_USER_NOT_PARTNER,
        f"calling user {third} is not homed in B",
    )


@pytest.mark.parametrize(
    "value", [f"<sip:{PARTNER_B}>", f'<sip:bob@{PARTNER_B};x="">', "<http://b.mc.example/bob>"]
)
def test_asserted_identity_that_is_not_an_mc_service_id_is_refused(value: str) -> None:
    decision = inbound(request("MESSAGE", pai=[B_GATEWAY, value], info=caller_info()))
    assert (decision.allowed, decision.reason, decision.status) == (False, SOURCE_MALFORMED, 403)
    assert "is not an MC service ID" in decision.detail


def test_tel_asserted_identity_beside_the_sip_one_is_skipped() -> None:
    assert_allowed(inbound(request("MESSAGE", pai=[B_GATEWAY, "<tel:+15550100>"], info=caller_info())))


@pytest.mark.parametrize("domain", [PARTNER_C, UNKNOWN], ids=["other-partner", "unknown-system"])
def test_calling_user_of_a_third_system(domain: str) -> None:
    caller = f"sip:carl@{domain}"
    assert_refused(
        inbound(request("INVITE", info=caller_info(caller))),
        CALLING_USER_NOT_PARTNER,
        f"calling user {caller} is not homed in B",
    )
    # In a group call on a B-homed group the caller may belong to any system (WA-IC-11.3).
    assert_allowed(inbound(request("INVITE", info=caller_info(caller, group=f"sip:grp1@{PARTNER_B}"))))


@pytest.mark.parametrize("caller", ["tel:+15550100", f"sip:{PARTNER_B}"], ids=["tel", "no-user"])
def test_calling_user_that_is_not_an_mc_service_id(caller: str) -> None:
    assert_refused(
        inbound(request("MESSAGE", info=caller_info(caller))),
        CALLING_USER_NOT_PARTNER,
        "calling user is not an MC service ID",
    )


@pytest.mark.parametrize(
    "target", [f"sip:bob2@{PARTNER_B}", f"sip:carl@{PARTNER_C}", f"sip:x@{UNKNOWN}", "tel:+15550100"]
)
def test_target_not_local(target: str) -> None:
    assert_refused(
        inbound(request("MESSAGE", info=caller_info(target=target))),
        TARGET_NOT_LOCAL,
        f"target {target} is not homed here",
    )


def test_target_check_is_for_initial_requests_only() -> None:
    # An in-dialog request's body is not a new target (e.g. an INFO during a call).
    info = caller_info(target=f"sip:bob2@{PARTNER_B}")
    assert_allowed(inbound(request("INFO", info=info, to_tag="t1")))


def test_message_with_partner_caller_and_no_target_allowed() -> None:
    assert_allowed(inbound(request("MESSAGE", info=caller_info(target=None))))


# ------------------------------------------------------------------- inbound: in-dialog


@pytest.mark.parametrize("method", ["BYE", "ACK", "INVITE", "MESSAGE", "NOTIFY"])
def test_in_dialog_request_without_asserted_identity_allowed(method: str) -> None:
    assert_allowed(inbound(request(method, pai=[], to_tag="t1")))


def test_in_dialog_request_still_refused_when_it_asserts_a_local_identity() -> None:
    decision = inbound(request("BYE", pai=[f"<sip:alice@{OWN}>"], to_tag="t1"))
    assert decision.reason == SOURCE_SPOOFED


def test_in_dialog_request_calling_user_still_checked() -> None:
    decision = inbound(request("INVITE", info=caller_info(f"sip:alice2@{OWN}"), to_tag="t1"))
    assert decision.reason == CALLING_USER_SPOOFED


# ------------------------------------------------------------ exit point (24.379 6.8.2)


def test_choose_partner_by_target_domain() -> None:
    agreements = [AGREEMENT_B, AGREEMENT_C]
    assert choose_partner(PARTNER_B, agreements, DOMAINS) is AGREEMENT_B
    assert choose_partner(PARTNER_C.upper(), agreements, DOMAINS) is AGREEMENT_C


@pytest.mark.parametrize("domain", [UNKNOWN, OWN])
def test_choose_partner_without_agreement(domain: str) -> None:
    decision = choose_partner(domain, [AGREEMENT_B, AGREEMENT_C], DOMAINS)
    assert isinstance(decision, Decision)
    assert_refused(decision, NO_AGREEMENT, f"no interconnection agreement covers {domain}", partner=None)


def test_choose_partner_domain_known_but_agreement_absent() -> None:
    # C is in the domain map but its agreement is not among those given: no agreement.
    decision = choose_partner(PARTNER_C, [AGREEMENT_B], DOMAINS)
    assert isinstance(decision, Decision)
    assert decision.reason == NO_AGREEMENT


def test_check_outbound_register() -> None:
    assert_refused(
        check_outbound(request("REGISTER"), AGREEMENT_B), REGISTER_REFUSED, "REGISTER never leaves the system"
    )


def test_check_outbound_method_not_allowed() -> None:
    narrow = agreement(methods=["MESSAGE"])
    assert_refused(
        check_outbound(request("INVITE"), narrow), METHOD_NOT_ALLOWED, "INVITE is not allowed towards B"
    )
    assert_allowed(check_outbound(request("MESSAGE"), narrow))


def test_check_outbound_allowed() -> None:
    assert_allowed(check_outbound(request("INVITE"), AGREEMENT_C), "C")
