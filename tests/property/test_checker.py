"""The checker can fail: each invariant is shown a hand-built history with outputs that
are right (no violation) and then the same with one violation planted (caught).

No engine here: inputs and outputs are written by hand, so these tests pin the checker's
reading of SPEC.md, independently of whatever the engine does.
"""

from __future__ import annotations

import io
from typing import Any

import orjson
import pytest
from checker import (
    Run,
    check_blocks,
    check_bounces,
    check_cancellations_complete,
    check_caps,
    check_cart_liveness,
    check_consent,
    check_gifts_and_topics,
    check_purchase_liveness,
    check_quiet_hours,
    check_reasons,
    check_sensitive,
    check_structure,
    check_triggers,
    check_verified,
)

from tactful.core.engine import Engine
from tactful.core.policy import load_policy
from tactful.service.replay import replay_lines

DAY = "2026-06-01"  # America/New_York is UTC-4: 12:00Z = 08:00 local, 01:00Z = 21:00 local


def t(hhmm: str, day: str = DAY) -> str:
    return f"{day}T{hhmm}:00Z"


def ev(eid: str, at: str, type_: str, **fields: Any) -> dict[str, Any]:
    return {"event_id": eid, "ts": at, "type": type_, **fields}


def verified(session: str = "s1", customer: str = "c1", method: str = "login") -> dict[str, Any]:
    return {"session_id": session, "customer_id": customer, "identity": {"method": method}}


def product(
    sku: str = "k-lamp", qty: int = 1, price: float = 40.0, category: tuple[str, ...] = ("home",)
) -> dict[str, Any]:
    return {
        "sku": sku,
        "product_id": f"p-{sku}",
        "category": list(category),
        "price": price,
        "currency": "USD",
        "qty": qty,
    }


def grant(eid: str, at: str, channel: str, customer: str = "c1", **kw: Any) -> dict[str, Any]:
    return ev(
        eid, at, "consent_granted", customer_id=customer, channel=channel, source="signup", **kw
    )


def intent(
    iid: str,
    created: str,
    channel: str = "email",
    kind: str = "abandoned_cart",
    send_after: str | None = None,
    customer: str = "c1",
    items: list[dict[str, Any]] | None = None,
    granted_at: str = t("10:00"),
    topic: str | None = None,
) -> dict[str, Any]:
    from checker import GUARDRAIL_CODES, TOPIC_OF, VALIDITY, ts

    from tactful.core.outputs import iso

    return {
        "intent_id": iid,
        "customer_id": customer,
        "channel": channel,
        "kind": kind,
        "items": items if items is not None else [{"sku": "k-lamp", "qty": 1, "price": 40.0}],
        "created_at": created,
        "send_after": send_after or created,
        "send_before": iso(ts(created) + VALIDITY),
        "topic": topic or TOPIC_OF[kind],
        "reasons": [kind, *GUARDRAIL_CODES],
        "consent": {"channel": channel, "granted_at": granted_at, "source": "signup"},
        "policy_version": "test",
    }


def decision(
    rec: dict[str, Any], trigger: list[str], outcome: str | None = None, reason: str | None = None
) -> dict[str, Any]:
    deferred = rec["send_after"] != rec["created_at"]
    return {
        "decision_id": f"dec-{rec['intent_id']}",
        "customer_id": rec["customer_id"],
        "kind": rec["kind"],
        "channel": rec["channel"],
        "outcome": outcome or ("deferred" if deferred else "emitted"),
        "reason": reason if reason is not None or not deferred else "quiet_hours",
        "at": rec["created_at"],
        "trigger_event_ids": trigger,
        "intent_id": rec["intent_id"],
    }


def cancel(rec: dict[str, Any], at: str, by: str, reason: str) -> tuple[dict[str, Any], ...]:
    record = {
        "intent_id": rec["intent_id"],
        "cancelled": True,
        "reason": reason,
        "customer_id": rec["customer_id"],
        "channel": rec["channel"],
        "at": at,
    }
    dec = {
        "decision_id": f"dec-x-{rec['intent_id']}",
        "customer_id": rec["customer_id"],
        "kind": rec["kind"],
        "channel": rec["channel"],
        "outcome": "cancelled",
        "reason": reason,
        "at": at,
        "trigger_event_ids": [by],
        "intent_id": rec["intent_id"],
    }
    return record, dec


# The base story: c1 has email+sms+push consent and a New York time zone, logs in and
# carts a lamp at 12:05Z; the abandoned_cart email goes out at 16:05Z.
BASE = [
    grant("g1", t("10:00"), "email"),
    grant("g2", t("10:00"), "sms"),
    grant("g3", t("10:00"), "push"),
    ev("p1", t("10:01"), "preferences_set", customer_id="c1", timezone="America/New_York"),
    ev("l1", t("12:00"), "login", **verified()),
    ev("a1", t("12:05"), "cart_add", **verified(), **product()),
]
EMAIL = intent("int-1", t("16:05"))


def run(
    events: list[dict[str, Any]],
    *records: dict[str, Any],
    decisions: list[dict[str, Any]] | None = None,
) -> Run:
    """records: intents / cancellations in emission order; decisions default to one
    emitted/deferred decision per intent, triggered by the last cart activity a1."""
    if decisions is None:
        decisions = [decision(r, ["a1"]) for r in records if not r.get("cancelled")]
    return Run(events, list(records), decisions)


def test_base_story_passes_every_check() -> None:
    r = run(BASE, EMAIL)
    for check in (
        check_consent,
        check_verified,
        check_quiet_hours,
        check_caps,
        check_blocks,
        check_cancellations_complete,
        check_structure,
        check_triggers,
        check_reasons,
        check_sensitive,
        check_gifts_and_topics,
    ):
        assert check(r) == [], check.__name__


# 1 consent -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (
            [
                ev(
                    "r1",
                    t("13:00"),
                    "consent_revoked",
                    customer_id="c1",
                    channel="email",
                    source="x",
                )
            ],
            "no email consent",
        ),
        ([grant("g9", t("14:00"), "email", expires_at=t("16:05"))], "expired"),
        ([ev("x1", t("13:00"), "erase_requested", customer_id="c1")], "no email consent"),
    ],
)
def test_consent_violations_are_caught(extra: list[dict[str, Any]], needle: str) -> None:
    events = sorted([*BASE, *extra], key=lambda e: e["ts"])
    found = check_consent(run(events, EMAIL))
    assert any(needle in v for v in found), found


def test_consent_without_any_grant_and_wrong_consent_ref_are_caught() -> None:
    assert check_consent(run(BASE[1:], EMAIL))  # no email grant at all
    assert check_consent(run(BASE, intent("int-1", t("16:05"), granted_at=t("09:00"))))


def test_consent_revoked_at_created_at_counts_only_for_events_before_the_timer() -> None:
    # a revocation at exactly 16:05 is applied after the timer due at 16:05 (SPEC §5)
    same = [
        *BASE,
        ev("r1", t("16:05"), "consent_revoked", customer_id="c1", channel="email", source="x"),
    ]
    assert check_consent(run(same, EMAIL)) == []


# 2 verified identity -------------------------------------------------------------------------
def test_unverified_session_intent_is_caught() -> None:
    guessed = [
        *BASE[:4],
        ev("a1", t("12:05"), "cart_add", **verified(method="ip_match"), **product()),
    ]
    found = check_verified(run(guessed, EMAIL))
    assert any("never verified" in v for v in found), found


def test_verified_elsewhere_does_not_verify_this_session() -> None:
    # c1 logged in on s2, but the cart is in s1 where only a cookie named c1
    events = [
        *BASE[:4],
        ev("l1", t("12:00"), "login", **verified("s2")),
        ev("a1", t("12:05"), "cart_add", **verified("s1", method="cookie"), **product()),
    ]
    found = check_verified(run(events, EMAIL))
    assert any("session s1" in v for v in found), found


def test_unverified_decision_must_be_null_customer_with_session() -> None:
    d = {
        "decision_id": "d1",
        "customer_id": "c1",
        "kind": "abandoned_cart",
        "channel": None,
        "outcome": "suppressed",
        "reason": "unverified_identity",
        "at": t("16:05"),
        "trigger_event_ids": ["a1"],
        "session_id": "s1",
    }
    assert check_verified(run(BASE, decisions=[d]))
    ok = {**d, "customer_id": None}
    assert check_verified(run(BASE, decisions=[ok])) == []
    assert check_verified(run(BASE, decisions=[{**ok, "session_id": None}]))


def test_intents_fed_from_before_an_erasure_need_a_new_verification() -> None:
    events = [
        *BASE,
        ev("x1", t("12:30"), "erase_requested", customer_id="c1"),
        grant("g4", t("12:31"), "email"),
        ev("s9", t("15:00"), "stock_level", sku="k-lamp", available=5),
        ev("s10", t("15:10"), "stock_level", sku="k-lamp", available=2),
    ]
    low = intent("int-2", t("15:10"), kind="low_stock", granted_at=t("12:31"))
    found = check_verified(run(events, low, decisions=[decision(low, ["s10"])]))
    assert any("never verified" in v or "never carted" in v for v in found), found


# 3 quiet hours --------------------------------------------------------------------------------
def test_sms_at_night_is_caught() -> None:
    night = intent("int-1", t("02:00", "2026-06-02"), channel="sms")  # 22:00 New York
    assert any("quiet hours" in v for v in check_quiet_hours(run(BASE, night)))
    right = intent(
        "int-1", t("02:00", "2026-06-02"), channel="sms", send_after=t("12:00", "2026-06-02")
    )  # 08:00 EDT
    assert check_quiet_hours(run(BASE, right)) == []


def test_21_00_local_is_already_quiet() -> None:
    at_nine = intent("int-1", t("01:00", "2026-06-02"), channel="push")  # 21:00 EDT
    assert check_quiet_hours(run(BASE, at_nine))


def test_deferral_further_than_the_next_allowed_minute_is_caught() -> None:
    late = intent(
        "int-1", t("02:00", "2026-06-02"), channel="sms", send_after=t("13:00", "2026-06-02")
    )  # 09:00 EDT: an hour too late
    assert any("next allowed" in v for v in check_quiet_hours(run(BASE, late)))


def test_customer_quiet_hours_narrow_the_window() -> None:
    events = [
        *BASE[:3],
        ev(
            "p1",
            t("10:01"),
            "preferences_set",
            customer_id="c1",
            timezone="Europe/Berlin",
            quiet_hours={"start": "20:00", "end": "09:00"},
        ),
        *BASE[4:],
    ]
    at_eight = intent(
        "int-1", t("06:00", "2026-06-02"), channel="sms", send_after=t("06:00", "2026-06-02")
    )  # 08:00 CEST: in her quiet hours
    assert check_quiet_hours(run(events, at_eight))
    at_nine = intent(
        "int-1", t("06:00", "2026-06-02"), channel="sms", send_after=t("07:00", "2026-06-02")
    )
    assert check_quiet_hours(run(events, at_nine)) == []


def test_email_is_not_held() -> None:
    held = intent("int-1", t("16:05"), send_after=t("17:00"))
    assert check_quiet_hours(run(BASE, held))


# 4 caps and cooldown --------------------------------------------------------------------------
def test_two_intents_within_16h_are_caught_unless_the_first_was_cancelled() -> None:
    first = intent("int-1", t("16:05"))
    second = intent("int-2", t("23:00"), kind="price_drop", topic="deals")
    events = [*BASE, ev("pc", t("23:00"), "price_change", sku="k-lamp", price=30.0, currency="USD")]
    decs = [decision(first, ["a1"]), decision(second, ["pc"])]
    assert any("cap 1/16h" in v for v in check_caps(run(events, first, second, decisions=decs)))
    rec, dec = cancel(first, t("17:00"), "r1", "no_consent")
    assert check_caps(run(events, first, rec, second, decisions=[*decs, dec])) == []


def test_fourth_intent_in_7_days_is_caught() -> None:
    days = ["2026-06-01", "2026-06-02", "2026-06-03", "2026-06-04"]
    intents = [
        intent(f"int-{i}", t("16:05", d), kind=k, topic=None)
        for i, (d, k) in enumerate(
            zip(days, ["abandoned_cart", "price_drop", "low_stock", "back_in_stock"], strict=True)
        )
    ]
    found = check_caps(run(BASE, *intents))
    assert any("cap 3/168h" in v for v in found), found


def test_fourth_sms_in_24h_is_caught() -> None:
    # (the default 1/16 h cap already forbids this; the sms cap must be reported too)
    smss = [
        intent(
            f"int-{i}",
            t(f"{i * 7:02d}:30"),
            channel="sms",
            send_after=None,
        )
        for i in range(4)
    ]
    found = check_caps(run(BASE, *smss))
    assert any("cap 3/24h sms" in v for v in found), found


def test_same_kind_same_sku_within_72h_is_a_cooldown_violation() -> None:
    a = intent("int-1", t("16:05"), kind="price_drop")
    b = intent("int-2", t("16:05", "2026-06-02"), kind="price_drop")  # 24 h later, cap clear
    found = check_caps(run(BASE, a, b))
    assert any("cooldown" in v for v in found), found
    c = intent("int-2", t("16:05", "2026-06-02"), kind="low_stock")
    assert check_caps(run(BASE, a, c)) == []


# 5 erasure / do-not-contact / complaints ------------------------------------------------------
@pytest.mark.parametrize(
    "stop",
    [
        ev("x", t("13:00"), "do_not_contact", customer_id="c1", channel="phone"),
        ev("x", t("13:00"), "unsubscribed", customer_id="c1", channel="email"),
        ev("x", t("13:00"), "complained", customer_id="c1", channel="email"),
        ev("x", t("13:00"), "erase_requested", customer_id="c1"),
    ],
)
def test_intent_after_a_stop_is_caught_until_regranted(stop: dict[str, Any]) -> None:
    events = [*BASE, stop]
    assert check_blocks(run(events, EMAIL))
    if stop["type"] != "erase_requested":
        regrant = [*events, grant("g9", t("14:00"), "email")]
        assert check_blocks(run(regrant, EMAIL)) == []


def test_unsubscribe_of_another_channel_does_not_block_email() -> None:
    events = [*BASE, ev("x", t("13:00"), "unsubscribed", customer_id="c1", channel="sms")]
    assert check_blocks(run(events, EMAIL)) == []


@pytest.mark.parametrize(
    ("stop", "reason"),
    [
        (
            ev(
                "x",
                t("05:00", "2026-06-02"),
                "consent_revoked",
                customer_id="c1",
                channel="sms",
                source="x",
            ),
            "no_consent",
        ),
        (
            ev("x", t("05:00", "2026-06-02"), "do_not_contact", customer_id="c1", channel="email"),
            "do_not_contact",
        ),
        (ev("x", t("05:00", "2026-06-02"), "erase_requested", customer_id="c1"), "erased"),
        (
            ev(
                "x",
                t("05:00", "2026-06-02"),
                "purchase",
                **verified(),
                order_id="o1",
                gift=False,
                items=[{"sku": "k-lamp", "qty": 1, "price": 40.0}],
            ),
            "converted",
        ),
    ],
)
def test_missing_cancellation_is_caught(stop: dict[str, Any], reason: str) -> None:
    sms = intent(
        "int-1", t("02:00", "2026-06-02"), channel="sms", send_after=t("12:00", "2026-06-02")
    )
    events = [*BASE, stop]
    assert any("not cancelled" in v for v in check_cancellations_complete(run(events, sms)))
    rec, dec = cancel(sms, stop["ts"], "x", reason)
    ok = run(events, sms, rec, decisions=[decision(sms, ["a1"]), dec])
    assert check_cancellations_complete(ok) == []
    assert check_structure(ok) == []


def test_stop_after_send_after_needs_no_cancellation() -> None:
    sms = intent(
        "int-1", t("02:00", "2026-06-02"), channel="sms", send_after=t("12:00", "2026-06-02")
    )
    late = ev("x", t("12:00", "2026-06-02"), "do_not_contact", customer_id="c1", channel="sms")
    assert check_cancellations_complete(run([*BASE, late], sms)) == []


# 7 structure ----------------------------------------------------------------------------------
def test_intent_without_decision_is_caught() -> None:
    assert any(
        "no emitted/deferred decision" in v for v in check_structure(run(BASE, EMAIL, decisions=[]))
    )


def test_duplicate_intent_id_is_caught() -> None:
    again = intent("int-1", t("16:05", "2026-06-05"))
    found = check_structure(run(BASE, EMAIL, again, decisions=[decision(EMAIL, ["a1"])]))
    assert any("emitted twice" in v for v in found), found


def test_bad_cancellations_are_caught() -> None:
    rec, dec = cancel(EMAIL, t("17:00"), "x", "do_not_contact")  # after send_after 16:05
    found = check_structure(run(BASE, EMAIL, rec, decisions=[decision(EMAIL, ["a1"]), dec]))
    assert any("not before its send_after" in v for v in found), found
    ghost = {**rec, "intent_id": "int-ghost"}
    assert any("not emitted before" in v for v in check_structure(run(BASE, ghost, EMAIL)))


def test_send_window_and_outcome_are_checked() -> None:
    inverted = {**EMAIL, "send_before": t("16:00")}
    assert check_structure(run(BASE, inverted))
    wrong_outcome = decision(EMAIL, ["a1"], outcome="deferred")
    assert check_structure(run(BASE, EMAIL, decisions=[wrong_outcome]))


def test_cart_timer_before_the_idle_time_is_caught() -> None:
    early = intent("int-1", t("15:00"))  # 2 h 55 min after the cart_add
    assert any("less than 4h" in v for v in check_structure(run(BASE, early)))


def test_phone_call_less_than_48h_after_cart_activity_is_caught() -> None:
    events = [
        *BASE,
        ev(
            "a2", t("12:00", "2026-06-02"), "cart_add", **verified(), **product("k-tv", price=650.0)
        ),
    ]
    call = intent("int-2", t("12:05", "2026-06-03"), channel="phone", kind="assist_offer")
    email = intent("int-1", t("16:05"))
    decs = [decision(email, ["a1"]), decision(call, ["a1"])]
    found = check_structure(run(events, email, call, decisions=decs))
    assert any("less than 48h" in v for v in found), found


# triggers ---------------------------------------------------------------------------------------
def test_low_stock_without_a_transition_is_caught() -> None:
    events = [
        *BASE,
        ev("s1", t("14:00"), "stock_level", sku="k-lamp", available=2),
        ev("s2", t("15:00"), "stock_level", sku="k-lamp", available=1),
    ]
    low = intent("int-2", t("15:00"), channel="push", kind="low_stock")
    assert check_triggers(run(events, low, decisions=[decision(low, ["s2"])]))
    events[-2] = ev("s1", t("14:00"), "stock_level", sku="k-lamp", available=9)
    assert check_triggers(run(events, low, decisions=[decision(low, ["s2"])])) == []


def test_price_drop_under_10_percent_is_caught() -> None:
    events = [*BASE, ev("pc", t("15:00"), "price_change", sku="k-lamp", price=37.0, currency="USD")]
    drop = intent("int-2", t("15:00"), kind="price_drop")
    assert check_triggers(run(events, drop, decisions=[decision(drop, ["pc"])]))
    events[-1] = {**events[-1], "price": 36.0}
    assert check_triggers(run(events, drop, decisions=[decision(drop, ["pc"])])) == []


def test_assist_offer_without_an_earlier_reminder_is_caught() -> None:
    call = intent("int-2", t("12:05", "2026-06-03"), channel="phone", kind="assist_offer")
    found = check_triggers(run(BASE, call))
    assert any("no abandoned_cart intent" in v for v in found), found
    assert check_triggers(run(BASE, EMAIL, call)) == []


def _call_story(reminder_channel: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """c1 carts a 650 tv at 12:05Z; the reminder goes out at 16:05Z on `reminder_channel`;
    the call is due 48 h after the cart_add."""
    events = [
        *BASE,
        grant("g4", t("10:00"), "phone"),
        ev("a2", t("12:05"), "cart_add", **verified(), **product("k-tv", price=650.0)),
    ]
    tv = [{"sku": "k-tv", "qty": 1, "price": 650.0}]
    reminder = intent("int-1", t("16:05"), channel=reminder_channel, items=tv)
    call = intent("int-2", t("12:05", "2026-06-03"), channel="phone", kind="assist_offer",
                  items=tv)
    return events, [reminder, call]


def test_a_call_after_a_push_reminder_is_caught() -> None:
    events, (email, call) = _call_story("email")
    decs = [decision(email, ["a2"]), decision(call, ["a2"])]
    assert check_triggers(run(events, email, call, decisions=decs)) == []
    events, (push, call) = _call_story("push")
    decs = [decision(push, ["a2"]), decision(call, ["a2"])]
    found = check_triggers(run(events, push, call, decisions=decs))
    assert any("reminded only by ['push']" in v for v in found), found


def test_a_suppressed_call_without_an_email_reminder_is_caught() -> None:
    # A suppressed call was evaluated, so it fired: the ladder must hold for it too.
    events, (push, call) = _call_story("push")
    suppressed = {**decision(call, ["a2"], outcome="suppressed", reason="frequency_cap"),
                  "channel": None, "intent_id": None}
    found = check_triggers(run(events, push, decisions=[decision(push, ["a2"]), suppressed]))
    assert any("reminded only by" in v for v in found), found
    found = check_triggers(run(events, decisions=[suppressed]))
    assert any("no abandoned_cart intent" in v for v in found), found


def test_a_call_after_a_cancelled_reminder_is_caught() -> None:
    events, (email, call) = _call_story("email")
    rec, dec = cancel(email, t("15:00"), "x", "converted")
    decs = [decision(email, ["a2"]), dec, decision(call, ["a2"])]
    found = check_triggers(run(events, email, rec, call, decisions=decs))
    assert any("no abandoned_cart intent" in v for v in found), found


# reason codes -----------------------------------------------------------------------------------
def test_reason_codes_are_checked() -> None:
    assert check_reasons(run(BASE, EMAIL)) == []
    with_reason = decision(EMAIL, ["a1"], reason="quiet_hours")
    assert any("emitted with reason" in v for v in check_reasons(
        run(BASE, EMAIL, decisions=[with_reason])))
    sms = intent("int-1", t("02:00", "2026-06-02"), channel="sms",
                 send_after=t("12:00", "2026-06-02"))
    assert check_reasons(run(BASE, sms)) == []  # deferred: quiet_hours
    silent = {**decision(sms, ["a1"]), "reason": None}
    assert any("deferred with reason None" in v for v in check_reasons(
        run(BASE, sms, decisions=[silent])))
    other = {**decision(sms, ["a1"]), "reason": "stale"}
    assert any("deferred with reason stale" in v for v in check_reasons(
        run(BASE, sms, decisions=[other])))
    made_up = {**decision(sms, ["a1"]), "outcome": "suppressed", "reason": "because"}
    assert any("'because'" in v for v in check_reasons(run(BASE, decisions=[made_up])))


def test_intent_reasons_must_be_the_kind_then_every_guardrail_code_in_order() -> None:
    from checker import GUARDRAIL_CODES

    by_name = {**EMAIL, "reasons": ["abandoned_cart", "verified_identity", "consent",
                                    "topic_preferences", "do_not_contact", "quiet_hours",
                                    "frequency_caps", *GUARDRAIL_CODES[6:]]}
    assert any("reasons" in v for v in check_reasons(run(BASE, by_name)))
    shuffled = {**EMAIL, "reasons": ["abandoned_cart", *reversed(GUARDRAIL_CODES)]}
    assert check_reasons(run(BASE, shuffled))
    assert check_reasons(run(BASE, {**EMAIL, "reasons": ["abandoned_cart"]}))


def test_the_checker_codes_are_the_ones_the_schema_documents() -> None:
    # The contract's list (SPEC §2: "documented with the schema"), not the engine's code.
    from pathlib import Path

    from checker import GUARDRAIL_CODES, KINDS, REASON_CODES

    root = Path(__file__).resolve().parents[2] / "schemas" / "outputs"
    intent_doc = orjson.loads((root / "intent.json").read_bytes())
    items = intent_doc["$defs"]["ContactIntent"]["properties"]["reasons"]["items"]
    listed = {c for part in items["anyOf"] for c in part["enum"]}
    assert listed == set(GUARDRAIL_CODES) | KINDS
    decision_doc = orjson.loads((root / "decision.json").read_bytes())
    reason = decision_doc["$defs"]["Decision"]["properties"]["reason"]["anyOf"]
    assert {c for part in reason for c in part.get("enum", ())} == REASON_CODES


def test_cancellation_dated_before_its_intent_is_caught() -> None:
    sms = intent("int-1", t("02:00", "2026-06-02"), channel="sms",
                 send_after=t("12:00", "2026-06-02"))
    # a revocation stamped 01:00 arrives after the 02:00 timer fired: it cancels the intent,
    # dated 02:00 (its created_at), never 01:00
    late = ev("r1", t("01:00", "2026-06-02"), "consent_revoked", customer_id="c1",
              channel="sms", source="x")
    events = [*BASE, late]
    rec, dec = cancel(sms, t("02:00", "2026-06-02"), "r1", "no_consent")
    assert check_structure(run(events, sms, rec, decisions=[decision(sms, ["a1"]), dec])) == []
    rec, dec = cancel(sms, t("01:00", "2026-06-02"), "r1", "no_consent")
    found = check_structure(run(events, sms, rec, decisions=[decision(sms, ["a1"]), dec]))
    assert any("before its created_at" in v for v in found), found
    rec, dec = cancel(sms, t("03:00", "2026-06-02"), "r1", "no_consent")
    found = check_structure(run(events, sms, rec, decisions=[decision(sms, ["a1"]), dec]))
    assert any("not the later of" in v for v in found), found


# 8 sensitive / gifts / topics -------------------------------------------------------------------
AID = {"sku": "k-aid", "qty": 1, "price": 449.0}


def _aid_story(opt_in: list[str] | None) -> list[dict[str, Any]]:
    prefs = {"timezone": "America/New_York"}
    if opt_in is not None:
        prefs["topics_opt_in"] = opt_in  # type: ignore[assignment]
    return [
        *BASE[:3],
        ev("p1", t("10:01"), "preferences_set", customer_id="c1", **prefs),
        BASE[4],
        ev(
            "a1",
            t("12:05"),
            "cart_add",
            **verified(),
            **product("k-aid", price=449.0, category=("health", "age_related")),
        ),
    ]


@pytest.mark.parametrize(
    ("opt_in", "caught"),
    [
        (None, True),
        (["health"], True),
        (["health", "age_related"], False),
    ],
)
def test_sensitive_item_needs_opt_in_to_every_sensitive_category(
    opt_in: list[str] | None, caught: bool
) -> None:
    found = check_sensitive(run(_aid_story(opt_in), intent("int-1", t("16:05"), items=[AID])))
    assert bool(found) is caught, found


def test_empty_items_are_caught() -> None:
    assert check_sensitive(run(BASE, intent("int-1", t("16:05"), items=[])))


def test_browse_for_a_gifted_sku_and_opted_out_topic_are_caught() -> None:
    events = [
        *BASE,
        ev(
            "b1",
            t("12:10"),
            "purchase",
            **verified(),
            order_id="o1",
            gift=True,
            items=[{"sku": "k-lamp", "qty": 1, "price": 40.0}],
        ),
    ]
    browse = intent("int-1", t("12:10", "2026-06-02"), kind="browse_abandonment")
    assert any("gifted" in v for v in check_gifts_and_topics(run(events, browse)))
    opted = [
        *BASE[:3],
        ev(
            "p1", t("10:01"), "preferences_set", customer_id="c1", topics_opt_out=["cart_reminders"]
        ),
        *BASE[4:],
    ]
    assert any("opted out" in v for v in check_gifts_and_topics(run(opted, EMAIL)))


# 6 and bad input: the byte comparisons in test_invariants notice a real change ------------------
def _replay(lines: list[bytes]) -> tuple[int, bytes, bytes]:
    intents, decisions = io.BytesIO(), io.BytesIO()
    stats = replay_lines(lines, Engine(load_policy()), intents, decisions)
    return stats.rejected, intents.getvalue(), decisions.getvalue()


def test_output_comparison_notices_a_line_that_is_not_a_duplicate() -> None:
    lines = [orjson.dumps(e) for e in BASE]
    base = _replay(lines)
    assert base[1], "the base story emits the email"
    # the same cart_add under a fresh id is new input: qty 2 instead of 1
    fresh = orjson.dumps({**BASE[-1], "event_id": "a1-bis"})
    assert _replay([*lines, fresh])[1] != base[1]
    # ... while the redelivered line is not
    assert _replay([*lines, lines[-1]])[1:] == base[1:]


def test_bad_line_comparison_notices_a_valid_line() -> None:
    lines = [orjson.dumps(e) for e in BASE]
    base = _replay(lines)
    revoke = orjson.dumps(
        ev("r1", t("13:00"), "consent_revoked", customer_id="c1", channel="email", source="x")
    )
    changed = _replay([*lines, revoke])
    assert changed[0] == 0 and changed[1:] != base[1:]
    bad = orjson.dumps({**orjson.loads(revoke), "channel": "fax"})
    assert _replay([*lines, bad]) == (1, base[1], base[2])


def test_browse_needs_three_views_within_24h() -> None:
    def view(eid: str, at: str) -> dict[str, Any]:
        return ev(eid, at, "product_view", **verified(), **product())

    spread = [
        *BASE[:5],
        view("v1", t("12:00")),
        view("v2", t("13:00", "2026-06-02")),
        view("v3", t("12:00", "2026-06-03")),
    ]
    browse = intent("int-1", t("12:00", "2026-06-04"), kind="browse_abandonment")
    decs = [decision(browse, ["v1", "v2", "v3"])]
    assert any("within 24h" in v for v in check_triggers(run(spread, browse, decisions=decs)))
    # a fourth view that makes three within 24 h (the first one may be older) is fine
    dense = [*spread, view("v4", t("12:30", "2026-06-03"))]
    browse = intent("int-1", t("12:30", "2026-06-04"), kind="browse_abandonment")
    decs = [decision(browse, ["v1", "v2", "v3", "v4"])]
    assert check_triggers(run(dense, browse, decisions=decs)) == []


def test_idle_cart_without_a_decision_is_caught() -> None:
    assert check_cart_liveness(run(BASE, EMAIL)) == []
    assert any("no abandoned_cart decision" in v for v in check_cart_liveness(run(BASE)))
    early = intent("int-1", t("16:04"))
    assert any("not 4h after" in v for v in check_cart_liveness(run(BASE, early)))
    twice = [decision(EMAIL, ["a1"]), {**decision(EMAIL, ["a1"]), "decision_id": "d2"}]
    assert any("2 abandoned_cart" in v for v in check_cart_liveness(run(BASE, decisions=twice)))
    # an unverified session is decided about too (suppressed, customer_id null)
    anon = [*BASE[:4], ev("a1", t("12:05"), "cart_add", session_id="s9", **product())]
    assert check_cart_liveness(run(anon))


# post_purchase (SPEC §3; semantics.md: a newer purchase supersedes the pending one) ---------
BUY = {"sku": "k-lamp", "qty": 1, "price": 40.0}


def _bought(*, gift: bool = False, second: bool = False) -> list[dict[str, Any]]:
    events = [
        *BASE,
        ev("b1", t("12:10"), "purchase", **verified(), order_id="o1", gift=gift, items=[BUY]),
    ]
    if second:
        events.append(ev("b2", t("12:00", "2026-06-03"), "purchase", **verified(),
                         order_id="o2", gift=False, items=[BUY]))
    # the input reaches 7 days past the purchases
    events.append(ev("p9", t("13:00", "2026-06-11"), "preferences_set", customer_id="c1",
                     timezone="America/New_York"))
    return events


def _follow_up(created: str, qty: int = 1) -> dict[str, Any]:
    return intent("int-pp", created, kind="post_purchase",
                  items=[{"sku": "k-lamp", "qty": qty, "price": 40.0}])


def test_a_post_purchase_seven_days_after_its_purchase_passes() -> None:
    rec = _follow_up(t("12:10", "2026-06-08"))
    r = run(_bought(), rec, decisions=[decision(rec, ["b1"])])
    for check in (check_triggers, check_gifts_and_topics, check_structure, check_reasons,
                  check_purchase_liveness, check_caps, check_verified):
        assert check(r) == [], check.__name__


def test_post_purchase_violations_are_caught() -> None:
    late = _follow_up(t("12:11", "2026-06-08"))
    found = check_triggers(run(_bought(), late, decisions=[decision(late, ["b1"])]))
    assert any("not 7 days after" in v for v in found), found
    rec = _follow_up(t("12:10", "2026-06-08"))
    found = check_triggers(run(_bought(gift=True), rec, decisions=[decision(rec, ["b1"])]))
    assert any("gift purchases" in v for v in found), found
    assert any("gifted" in v for v in check_gifts_and_topics(
        run(_bought(gift=True), rec, decisions=[decision(rec, ["b1"])])))
    other = intent("int-pp", t("12:10", "2026-06-08"), kind="post_purchase",
                   items=[{"sku": "k-other", "qty": 1, "price": 1.0}])
    found = check_triggers(run(_bought(), other, decisions=[decision(other, ["b1"])]))
    assert any("was not bought" in v for v in found), found


def test_a_newer_purchase_that_did_not_supersede_is_caught() -> None:
    # b2 came 2 days after b1, before b1's follow-up was due: one follow-up, 7 days after b2,
    # with both lines (qty 2)
    ok = _follow_up(t("12:00", "2026-06-10"), qty=2)
    assert check_triggers(run(_bought(second=True), ok,
                              decisions=[decision(ok, ["b1", "b2"])])) == []
    early = _follow_up(t("12:10", "2026-06-08"))
    found = check_triggers(run(_bought(second=True), early,
                               decisions=[decision(early, ["b1"])]))
    assert any("did not supersede" in v for v in found), found


def test_a_purchase_no_post_purchase_decision_names_is_caught() -> None:
    assert check_purchase_liveness(run(_bought(gift=True), decisions=[])) == []
    found = check_purchase_liveness(run(_bought(), decisions=[]))
    assert any("b1" in v for v in found), found


# bounces (docs/semantics.md, Bounces: the channel held back 30 days, a new grant lifts it) ---
def test_an_email_intent_within_30_days_of_a_bounce_is_caught_unless_regranted() -> None:
    bounce = ev("f1", t("11:00"), "bounced", customer_id="c1", channel="email")
    assert check_bounces(run([*BASE, bounce], EMAIL))
    regrant = grant("g8", t("11:30"), "email")
    assert check_bounces(run([*BASE, bounce, regrant], EMAIL)) == []
    sms = ev("f2", t("11:00"), "bounced", customer_id="c1", channel="sms")
    assert check_bounces(run([*BASE, sms], EMAIL)) == []
    long_ago = ev("f3", t("11:00", "2026-04-20"), "bounced", customer_id="c1", channel="email")
    assert check_bounces(run([long_ago, *BASE], EMAIL)) == []
