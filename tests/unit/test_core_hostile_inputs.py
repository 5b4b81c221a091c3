"""What a hostile or broken producer can no longer do to the engine: outrank a "stop" with a
grant from a clock ahead, confirm an erased id by hashing guesses, keep marks for ever, or
stop a replay with an input the engine fails on."""

from __future__ import annotations

import hashlib
import io
from datetime import UTC, datetime
from typing import Any

import orjson
from tests.unit.test_core_engine import POLICY, Story, at

from tactful.core.engine import Engine, Outbox
from tactful.core.messages import ErasureKeys, ErasureMark
from tactful.core.policy import load_policy
from tactful.core.state import CustomerState
from tactful.service.replay import replay_lines

YEAR = 365 * 24.0


def test_a_grant_stamped_a_year_ahead_does_not_outrank_a_later_revocation() -> None:
    s = Story()
    s.consent(YEAR, "email")  # a system with a wrong clock
    s.revoke(-1, "email")  # the shopper's real "stop", arriving after it
    s.add(0)
    s.until(YEAR + 10)
    assert [i for i in s.intents() if i.channel == "email"] == []


def test_a_revocation_keeps_the_latest_time_known_so_no_older_grant_revives_it() -> None:
    s = Story()
    s.consent(5, "email")
    s.revoke(1, "email")  # arrives after the grant stamped 5
    s.consent(3, "email")  # a late grant stamped before what is known
    s.add(6)
    s.until(12)
    assert s.intents() == []
    assert s.one("abandoned_cart").reason == "no_consent"


def test_a_grant_after_a_revocation_in_both_orders_restores_consent() -> None:
    s = Story()
    s.revoke(-2, "email")
    s.consent(-1, "email")
    s.add(0)
    s.until(4)
    assert [i.channel for i in s.intents()] == ["email"]


# ------------------------------------------------------------------ erasure marks


def test_marks_are_keyed_by_the_secret_not_a_plain_hash_of_the_id() -> None:
    a, b = ErasureKeys(b"secret-one-0123456"), ErasureKeys(b"secret-two-0123456")
    assert a.mark("customer", "cust-1") != b.mark("customer", "cust-1")
    assert a.mark("customer", "cust-1") != a.mark("session", "cust-1")
    for plain in (hashlib.sha256(b"cust-1").hexdigest(), hashlib.blake2b(b"cust-1").hexdigest(),
                  hashlib.blake2b(b"cust-1", digest_size=16,
                                  person=b"tactful-erased").hexdigest()):
        assert plain[:32] not in a.mark("customer", "cust-1")
    assert a.events("e-1") != b.events("e-1")


def _erased_story(keys: ErasureKeys) -> Story:
    s = Story()
    s.pipeline.engine = Engine(POLICY, erasure=keys)
    s.consent(-1, "email")
    s.erase(0)
    return s


def test_after_a_rotation_marks_under_the_previous_secret_still_refuse_late_inputs() -> None:
    s = _erased_story(ErasureKeys(b"old-secret-0123456"))
    assert "cust-1" not in s.pipeline.customers and s.pipeline.erasures
    s.pipeline.engine = Engine(POLICY, erasure=ErasureKeys(b"new-secret-0123456",
                                                          b"old-secret-0123456"))
    s.consent(-0.5, "email")  # stamped before the erasure, arriving late
    assert "cust-1" not in s.pipeline.customers


def test_without_the_previous_secret_the_old_marks_are_not_found() -> None:
    # Why rotation keeps the previous secret: the mark cannot be found without it.
    s = _erased_story(ErasureKeys(b"old-secret-0123456"))
    s.pipeline.engine = Engine(POLICY, erasure=ErasureKeys(b"new-secret-0123456"))
    s.consent(-0.5, "email")
    assert "cust-1" in s.pipeline.customers


def test_a_mark_past_the_late_input_window_is_deleted_when_its_key_comes_back() -> None:
    s = _erased_story(ErasureKeys(b"a-secret-012345678"))
    marks = dict(s.pipeline.erasures)
    assert len(marks) == 1
    window_h = POLICY.late_input_window / 3600
    s.consent(window_h - 1, "email")  # within the window: a new input, the mark stays
    assert s.pipeline.erasures == marks
    s2 = _erased_story(ErasureKeys(b"a-secret-012345678"))
    s2.consent(window_h + 1, "email")
    assert s2.pipeline.erasures == {}
    assert "cust-1" in s2.pipeline.customers


def test_the_engine_says_when_a_mark_expired() -> None:
    engine = Engine(POLICY)
    mark = ErasureMark(at(0).timestamp())
    assert not engine.mark_expired(mark, mark.at + POLICY.late_input_window)
    assert engine.mark_expired(mark, mark.at + POLICY.late_input_window + 1)


# ------------------------------------------------------------------ poison inputs


class FailsOnOneCustomer(Engine):
    """An engine with a bug that one input meets (its message would carry the id)."""

    def on_customer(self, st: CustomerState | None, msg: object, t: float, out: Outbox,
                    mark: Any = None) -> CustomerState | None:
        if getattr(msg, "customer_id", None) == "cust-poison":
            raise KeyError("cust-poison")
        return super().on_customer(st, msg, t, out, mark)


def test_replay_dead_letters_an_input_the_engine_fails_on_and_goes_on() -> None:
    def grant(n: int, cust: str) -> bytes:
        return orjson.dumps({"event_id": f"g{n}", "type": "consent_granted",
                             "ts": f"2026-05-01T09:0{n}:00Z", "customer_id": cust,
                             "channel": "email", "source": "signup"})
    cart = orjson.dumps({
        "event_id": "c1", "type": "cart_add", "ts": "2026-05-01T10:00:00Z",
        "session_id": "s-ok", "customer_id": "cust-ok", "identity": {"method": "login"},
        "sku": "k1", "product_id": "p1", "category": ["home"], "price": 20.0,
        "currency": "USD", "qty": 1})
    intents, decisions, dead = io.BytesIO(), io.BytesIO(), io.BytesIO()
    stats = replay_lines([grant(1, "cust-poison"), grant(2, "cust-ok"), cart],
                         FailsOnOneCustomer(load_policy()), intents, decisions,
                         deadletter_out=dead)
    assert stats.failed == 1 and stats.rejected_lines == [(1, "processing_error: KeyError")]
    letter = orjson.loads(dead.getvalue())
    assert letter["reason"] == "processing_error: KeyError" and letter["offset"] == 1
    sent = [orjson.loads(x) for x in intents.getvalue().splitlines()]
    assert [(i["customer_id"], i["kind"]) for i in sent] == [("cust-ok", "abandoned_cart")]


def test_replay_bounds_future_timestamps_by_the_processing_time_it_is_given() -> None:
    line = orjson.dumps({"event_id": "g1", "type": "consent_granted",
                         "ts": "2026-05-01T10:00:00Z", "customer_id": "c", "channel": "email",
                         "source": "x"})
    ts = datetime(2026, 5, 1, 10, tzinfo=UTC).timestamp()
    for now, rejected in ((ts - POLICY.max_future_skew, 0), (ts - POLICY.max_future_skew - 1, 1)):
        stats = replay_lines([line], Engine(POLICY), io.BytesIO(), io.BytesIO(), now=now)
        assert stats.rejected == rejected, (now, stats.rejected_lines)
        if rejected:
            assert stats.rejected_lines[0][1].startswith("future_timestamp")
