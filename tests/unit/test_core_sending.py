"""The sender's decisions (core/sending.py): the window, cancellations, retries, commits."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from tactful.core.outputs import ConsentRef, ContactIntent, IntentItem
from tactful.core.sending import (
    CommitLedger,
    Deliver,
    RetryAt,
    RetryPolicy,
    Settle,
    Skip,
    Stale,
    Wait,
    Window,
    after_attempt,
    cancel_effect,
    decide,
    feedback,
    parse_time,
)

T0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC).timestamp()
WINDOW = Window(T0, T0 + 86_400)

INTENT = ContactIntent(
    intent_id="int-0123456789abcdef0123", customer_id="cust-42", channel="email",
    kind="abandoned_cart", items=[IntentItem("sku-1", 2, 19.99)],
    created_at="2026-05-04T12:00:00Z", send_after="2026-05-04T12:00:00Z",
    send_before="2026-05-05T12:00:00Z", topic="cart_reminders",
    reasons=["abandoned_cart", "consent"],
    consent=ConsentRef("email", "2026-01-01T00:00:00Z", "signup"), policy_version="v1+abc",
)


def test_window_of_an_intent_reads_its_times() -> None:
    assert Window.of(INTENT) == WINDOW
    assert parse_time("2026-05-04T14:00:00+02:00") == T0


def test_a_time_without_offset_is_refused() -> None:
    with pytest.raises(ValueError, match="offset"):
        parse_time("2026-05-04T12:00:00")


def test_before_send_after_it_waits_until_send_after() -> None:
    assert decide(WINDOW, None, T0 - 1) == Wait(T0)


def test_inside_the_window_it_is_delivered_at_both_edges() -> None:
    assert decide(WINDOW, None, T0) == Deliver()
    assert decide(WINDOW, None, T0 + 86_400) == Deliver()


def test_after_send_before_it_is_stale() -> None:
    assert decide(WINDOW, None, T0 + 86_400.001) == Stale()


@pytest.mark.parametrize("held", ["sending", "delivered", "bounced", "stale", "cancelled",
                                  "no_address"])
def test_an_id_already_held_is_never_attempted_again(held: str) -> None:
    assert decide(WINDOW, held, T0 + 10) == Skip(held)  # type: ignore[arg-type]


def test_a_temporary_failure_may_be_tried_again_inside_the_window() -> None:
    assert decide(WINDOW, "retry", T0 + 10) == Deliver()
    assert decide(WINDOW, "retry", T0 + 90_000) == Stale()


def test_cancellation_effects() -> None:
    assert cancel_effect(None) == "ahead_of_intent"
    assert cancel_effect("retry") == "prevented"
    assert cancel_effect("delivered") == "after_delivery"
    assert cancel_effect("bounced") == "after_delivery"
    assert cancel_effect("sending") == "after_delivery"
    assert cancel_effect("cancelled") == "repeat"
    assert cancel_effect("stale") == "repeat"


RETRY = RetryPolicy(base=5.0, cap=60.0, attempts=4)


def test_backoff_doubles_up_to_its_cap() -> None:
    assert [RETRY.delay(n) for n in (1, 2, 3, 4, 5, 6)] == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0]


def test_after_an_attempt() -> None:
    assert after_attempt("delivered", 1, WINDOW, T0, RETRY) == Settle("delivered")
    assert after_attempt("bounced", 1, WINDOW, T0, RETRY) == Settle("bounced")
    assert after_attempt("unknown", 1, WINDOW, T0, RETRY) == Settle("sending")
    assert after_attempt("temporary", 1, WINDOW, T0, RETRY) == RetryAt(T0 + 5)
    assert after_attempt("temporary", 3, WINDOW, T0, RETRY) == RetryAt(T0 + 20)


def test_temporary_failures_give_up_as_bounced_after_the_last_attempt() -> None:
    assert after_attempt("temporary", 4, WINDOW, T0, RETRY) == Settle("bounced")


def test_an_unavailable_server_is_tried_again_without_a_limit() -> None:
    assert after_attempt("unavailable", 1, WINDOW, T0, RETRY) == RetryAt(T0 + 5)
    assert after_attempt("unavailable", 40, WINDOW, T0, RETRY) == RetryAt(T0 + 60)
    assert after_attempt("unavailable", 40, WINDOW, T0 + 86_390, RETRY) == Settle("stale")


def test_a_retry_past_send_before_is_not_made() -> None:
    assert after_attempt("temporary", 1, WINDOW, T0 + 86_398, RETRY) == Settle("stale")


def test_feedback_of_a_delivery_is_a_valid_delivered_event() -> None:
    event = feedback(INTENT, "delivered", T0 + 30)
    assert event is not None
    doc = msgspec.json.decode(msgspec.json.encode(event))
    assert doc == {
        "type": "delivered", "event_id": doc["event_id"], "ts": "2026-05-04T12:00:30Z",
        "customer_id": "cust-42", "channel": "email", "intent_id": "int-0123456789abcdef0123",
    }
    assert doc["event_id"].startswith("snd-")
    # the same outcome of the same intent always has the same id (a repeat is dropped)
    again = feedback(INTENT, "delivered", T0 + 99)
    assert again is not None and again.event_id == event.event_id


def test_feedback_of_a_bounce_and_of_nothing() -> None:
    bounced = feedback(INTENT, "bounced", T0)
    delivered = feedback(INTENT, "delivered", T0)
    assert bounced is not None and delivered is not None
    assert msgspec.json.decode(msgspec.json.encode(bounced))["type"] == "bounced"
    assert bounced.event_id != delivered.event_id
    for state in ("stale", "cancelled", "sending", "retry", "no_address"):
        assert feedback(INTENT, state, T0) is None  # type: ignore[arg-type]


def test_ledger_commits_past_settled_offsets_only() -> None:
    ledger = CommitLedger()
    assert ledger.committable() is None
    for offset in (10, 11, 12):
        ledger.read(offset)
    ledger.settle(10)
    assert ledger.committable() == 11  # 11 still waits: it holds the commit back
    ledger.mark(11)
    ledger.settle(12)
    assert ledger.committable() is None  # no progress while 11 waits
    ledger.settle(11)
    assert ledger.committable() == 13
    ledger.mark(13)
    assert ledger.committable() is None
