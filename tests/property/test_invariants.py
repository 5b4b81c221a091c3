"""Property tests: random adversarial histories through `replay_lines`, judged by the
independent checker in checker.py (written from SPEC.md, not from the engine).

Each property runs 1000 examples. A failure prints the history as JSON lines (paste it
into a file and run `tactful replay` on it) and every violation the checker found.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from typing import Any

import orjson
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
from hypothesis import HealthCheck, given, note, settings, target
from hypothesis import strategies as st
from strategies import History, histories, histories_with_bad_lines

from tactful.core.engine import Engine
from tactful.core.policy import load_policy
from tactful.service.replay import ReplayStats, replay_lines

POLICY = load_policy()
# TACTFUL_PROPERTY_PAST_KNOWN_BUGS=1 leaves out the two patterns of the open engine bugs in
# test_engine_bugs.py (redelivery after an erasure, sessions verified by a page_view), to
# see whether anything else fails meanwhile.
HISTORIES = (
    histories(redeliver_across_erasure=False, bind_types=("login",))
    if os.environ.get("TACTFUL_PROPERTY_PAST_KNOWN_BUGS") == "1"
    else histories()
)
# `make test` (and CI) runs a fixed sequence of examples: the same code gives the same
# verdict. `make explore` (TACTFUL_PROPERTY_EXPLORE=1) searches fresh examples each run.
EXPLORE = os.environ.get("TACTFUL_PROPERTY_EXPLORE") == "1"
PROPERTY = settings(
    max_examples=5000 if EXPLORE else 1000,
    derandomize=not EXPLORE,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def replay(lines: Sequence[bytes]) -> tuple[ReplayStats, bytes, bytes]:
    intents, decisions = io.BytesIO(), io.BytesIO()
    stats = replay_lines(list(lines), Engine(POLICY), intents, decisions, until=None)
    return stats, intents.getvalue(), decisions.getvalue()


def checked_run(history: History) -> Run:
    stats, intents, decisions = replay(history.lines)
    assert stats.rejected == 0, f"valid lines were rejected: {stats.rejected_lines}"
    run = Run.from_bytes(history.lines, intents, decisions)
    # steer the search towards histories that actually contact (and cancel) people
    target(float(len(run.intents)), label="intents")
    target(float(len(run.cancellations)), label="cancellations")
    note(f"intents:\n{intents.decode()}decisions:\n{decisions.decode()}")
    return run


def assert_holds(check: Callable[[Run], list[str]], history: History) -> None:
    violations = check(checked_run(history))
    assert not violations, "\n".join(violations)


# 1 ---------------------------------------------------------------------------------------------
@PROPERTY
@given(HISTORIES)
def test_no_intent_without_consent_at_created_at(history: History) -> None:
    """Every intent's channel had consent granted, not revoked (nor erased), not expired at
    its created_at, and `consent` names that grant (SPEC §4.2, §2)."""
    assert_holds(check_consent, history)


# 2 ---------------------------------------------------------------------------------------------
@PROPERTY
@given(HISTORIES)
def test_no_contact_without_verified_identity(history: History) -> None:
    """Intents and decisions name a customer only about sessions where that customer was
    verified (login/email_link) before; decisions about unverified sessions carry
    customer_id null and the session_id (SPEC §1, §3, §4.1)."""
    assert_holds(check_verified, history)


# 3 ---------------------------------------------------------------------------------------------
@PROPERTY
@given(HISTORIES)
def test_send_after_is_the_next_allowed_minute(history: History) -> None:
    """sms/push/phone send_after lies in 08:00-21:00 local (customer's zone at decision time,
    else America/New_York) and outside the customer's quiet_hours, and is the next allowed
    minute; email is not held (SPEC §4.5)."""
    assert_holds(check_quiet_hours, history)


# 4 ---------------------------------------------------------------------------------------------
@PROPERTY
@given(HISTORIES)
def test_frequency_caps_and_cooldown(history: History) -> None:
    """<= 1 per 16 h and <= 3 per 7 d per customer, sms <= 3 per 24 h, over emitted
    not-cancelled intents by created_at; same kind + cart/sku not within 72 h (SPEC §4.6-7)."""
    assert_holds(check_caps, history)


# 5 ---------------------------------------------------------------------------------------------
@PROPERTY
@given(HISTORIES)
def test_no_intent_after_erasure_dnc_complaint_or_unsubscribe(history: History) -> None:
    """Nothing after erase_requested / do_not_contact (any channel) or complained /
    unsubscribed (its channel) until a later consent_granted for the channel; nothing fed
    by events from before an erasure (SPEC §4.4, §4.13); nothing on a channel within 30
    days of a bounce on it without a later grant (docs/semantics.md, Bounces)."""
    run = checked_run(history)
    violations = check_blocks(run) + check_bounces(run)
    assert not violations, "\n".join(violations)


@PROPERTY
@given(HISTORIES)
def test_stop_events_cancel_pending_intents(history: History) -> None:
    """A revocation, complaint, unsubscribe, do_not_contact, erasure or converting purchase
    arriving before an emitted intent's send_after cancels it (SPEC §2)."""
    assert_holds(check_cancellations_complete, history)


# 6 ---------------------------------------------------------------------------------------------
@PROPERTY
@given(HISTORIES, st.data())
def test_deterministic_and_redelivery_is_idempotent(history: History, data: Any) -> None:
    """The same input gives byte-identical output; a line delivered twice in a row (same
    event_id) changes nothing (SPEC §1, §2, §6)."""
    lines = history.lines
    first = replay(lines)
    second = replay(lines)
    assert first[1:] == second[1:], "same input, different output"
    i = data.draw(st.integers(0, len(lines) - 1), label="duplicated line")
    doubled = [*lines[: i + 1], lines[i], *lines[i + 1 :]]
    third = replay(doubled)
    assert third[1] == first[1], "duplicated line changed the intents"
    assert third[2] == first[2], "duplicated line changed the decisions"


# 7 ---------------------------------------------------------------------------------------------
@PROPERTY
@given(HISTORIES)
def test_output_structure(history: History) -> None:
    """Every intent has an emitted/deferred decision with its intent_id; intent_ids are
    unique; cancellations follow their intent, come from an event stamped before its
    send_after, are dated the later of that event's ts and the intent's created_at, and have
    a cancelled decision; created_at <= send_after <= send_before = created_at + 24 h; cart timers
    (incl. phone) come only after the cart's idle time (SPEC §2-§4)."""
    assert_holds(check_structure, history)


@PROPERTY
@given(HISTORIES)
def test_triggers_fire_as_specified(history: History) -> None:
    """low_stock / back_in_stock only on the > 3 -> <= 3 and 0 -> > 0 transitions of a carted
    sku, price_drop only >= 10 % below a cart_add price, browse_abandonment 24 h after >= 3
    views of one product, assist_offer (emitted, deferred or suppressed) only after an
    email abandoned_cart intent for the cart, not cancelled, went out >= 24 h before (the
    email-first ladder), post_purchase 7 days after its latest purchase, none of them a
    gift, with their lines, superseded by a newer purchase before it fired (SPEC §3)."""
    assert_holds(check_triggers, history)


@PROPERTY
@given(HISTORIES)
def test_every_reason_is_a_documented_code(history: History) -> None:
    """Decision reasons are SPEC §2 codes, null only for emitted, quiet_hours for deferred;
    an intent's reasons are its kind, then every guardrail code of §4 in order; a
    cancellation carries a code (SPEC §2)."""
    assert_holds(check_reasons, history)


@PROPERTY
@given(HISTORIES)
def test_every_idle_cart_is_decided_once(history: History) -> None:
    """A cart idle for 4 h gets exactly one abandoned_cart decision naming its last
    activity (fired at +4 h, or cancelled earlier), whoever owns it; every purchase that is
    not a gift is named by a post_purchase decision (SPEC §3)."""
    run = checked_run(history)
    violations = check_cart_liveness(run) + check_purchase_liveness(run)
    assert not violations, "\n".join(violations)


# 8 ---------------------------------------------------------------------------------------------
@PROPERTY
@given(HISTORIES)
def test_no_sensitive_items_without_opt_in(history: History) -> None:
    """No intent item has a sensitive category the customer did not opt in to via
    topics_opt_in; no intent has empty items (SPEC §4.11)."""
    assert_holds(check_sensitive, history)


@PROPERTY
@given(HISTORIES)
def test_gifts_and_topic_opt_outs(history: History) -> None:
    """No browse_abandonment or post_purchase for a sku the customer bought as a gift, no
    post_purchase armed by a gift purchase; no intent in an
    opted-out topic (SPEC §4.3, §4.10)."""
    assert_holds(check_gifts_and_topics, history)


# bad input -------------------------------------------------------------------------------------
@PROPERTY
@given(histories_with_bad_lines())
def test_bad_lines_are_rejected_and_change_nothing(case: tuple[History, list[bytes], int]) -> None:
    """Invalid JSON, unknown type, missing field, negative qty and other impossible values
    are counted as rejected and change neither state, nor the dedup memory, nor the clock
    (SPEC §1)."""
    history, mixed, n_bad = case
    clean = replay(history.lines)
    dirty = replay(mixed)
    assert dirty[0].rejected == n_bad, dirty[0].rejected_lines
    assert dirty[0].events == clean[0].events
    assert dirty[1] == clean[1], "bad lines changed the intents"
    assert dirty[2] == clean[2], "bad lines changed the decisions"


def _key(event: dict[str, Any]) -> str:
    """The Kafka key SPEC §1 gives the event: session_id, sku or customer_id."""
    for field in ("session_id", "sku", "customer_id"):
        if field in event:
            return f"{field}={event[field]}"
    raise AssertionError(event)


@PROPERTY
@given(histories_with_bad_lines(), st.data())
def test_batched_messages_equal_single_events(
    case: tuple[History, list[bytes], int], data: Any
) -> None:
    """A message may carry a JSON array of events sharing its key: processed in array order
    exactly as if sent one per message; a bad element is rejected alone (SPEC §1)."""
    history, _, _ = case
    events = list(history.events)
    single = replay(history.lines)
    batched: list[bytes] = []
    n_bad = 0
    i = 0
    while i < len(events):
        j = i + 1
        while (
            j < len(events)
            and _key(events[j]) == _key(events[i])
            and data.draw(st.booleans(), label=f"batch {j} with {i}")
        ):
            j += 1
        group = [orjson.dumps(e) for e in events[i:j]]
        if data.draw(st.integers(0, 4), label=f"bad element in batch {i}") == 0:
            bad = orjson.dumps(
                {**events[i], "event_id": events[i]["event_id"], "ts": "2026-13-01T00:00:00Z"}
            )
            group.insert(data.draw(st.integers(0, len(group))), bad)
            n_bad += 1
        batched.append(b"[" + b",".join(group) + b"]" if len(group) > 1 else group[0])
        i = j
    result = replay(batched)
    assert result[0].rejected == n_bad, result[0].rejected_lines
    assert result[1] == single[1], "batching changed the intents"
    assert result[2] == single[2], "batching changed the decisions"
