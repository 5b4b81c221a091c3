"""The runtime replay and the worker share (core.runtime): the timer and holder indexes,
and the scopes that drive the engine through them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tactful.core.engine import ERASED, INDEX, Outbox
from tactful.core.messages import CartIndex, ErasureMark, SessionFact, SkuSignal
from tactful.core.runtime import (
    DictMarks,
    DictStore,
    EventTimeMerger,
    HolderIndex,
    Scope,
    TimerIndex,
    keep_local,
)


def test_a_due_time_moving_earlier_is_queued_and_one_moving_later_keeps_its_entry() -> None:
    timers: TimerIndex[str] = TimerIndex()
    timers.schedule("a", 10.0)
    timers.schedule("a", 5.0)  # earlier: a new entry
    timers.schedule("a", 20.0)  # later: nothing pushed
    timers.schedule("b", None)  # nothing due: nothing kept
    assert len(timers.heap) == 2 and timers.scheduled == {"a": 5.0} and "b" not in timers
    assert timers.pop_due(4.9) is None
    assert timers.pop_due(5.0) == (5.0, "a")
    assert timers.pop_due(100.0) is None  # the 10.0 entry was superseded


def test_due_walks_keys_in_time_order_and_requeues_one_that_moved_later() -> None:
    timers: TimerIndex[str] = TimerIndex()
    actual = {"early": 1.0, "moved": 9.0, "late": 3.0, "gone": 2.0}
    states = {"early": "early", "moved": "moved", "late": "late"}  # "gone" has no state
    for key, due in (("early", 1.0), ("moved", 2.0), ("late", 3.0), ("gone", 2.0)):
        timers.schedule(key, due)
    fired = [(due, key) for due, key, _ in timers.due(5.0, states.get, actual.__getitem__)]
    assert fired == [(1.0, "early"), (3.0, "late")]
    assert timers.scheduled == {"moved": 9.0}  # queued again at its real due time
    assert [key for _, key, _ in timers.due(9.0, states.get, actual.__getitem__)] == ["moved"]


def test_a_key_with_nothing_due_any_more_is_dropped_when_it_comes_up() -> None:
    timers: TimerIndex[str] = TimerIndex()
    timers.schedule("k", 1.0)
    assert list(timers.due(2.0, lambda key: "state", lambda state: None)) == []
    assert len(timers) == 0


def test_a_forgotten_key_never_fires() -> None:
    timers: TimerIndex[str] = TimerIndex()
    timers.schedule("k", 1.0)
    timers.forget("k")
    assert timers.next_time() == 1.0  # the stale entry stays until it comes up ...
    assert timers.pop_due(2.0) is None  # ... and is dropped then
    assert timers.next_time() is None


def test_holders_are_kept_in_the_order_they_started_holding() -> None:
    holders = HolderIndex()
    for customer in ("c2", "c1", "c3"):
        holders.apply(CartIndex("sku-1", customer, True, 1.0))
    holders.apply(CartIndex("sku-1", "c1", False, 2.0))
    holders.apply(CartIndex("sku-2", "c9", False, 2.0))  # never held: nothing happens
    assert holders.holders("sku-1") == ["c2", "c3"]
    assert holders.holders("sku-2") == []
    copy = holders.holders("sku-1")
    copy.append("c7")
    assert holders.holders("sku-1") == ["c2", "c3"]
    for customer in ("c2", "c3"):
        holders.apply(CartIndex("sku-1", customer, False, 3.0))
    assert holders.by_sku == {}


# ------------------------------------------------------------------ scopes
# ``Scope`` is what replay and the worker drive; here it runs over a stand-in engine that
# records each call, so the runtime's own rules (marks, stores, timers, failures) are
# checked apart from the engine's.


@dataclass
class Cust:
    """A customer state: a due time, the skus held."""

    due: float | None = None
    skus: set[str] = field(default_factory=set)
    seen: list[Any] = field(default_factory=list)


class StandIn:
    """Only what ``Scope`` calls of ``Engine``."""

    def __init__(self) -> None:
        self.marks_looked_up: list[str] = []
        self.fail_on: object = None

    def on_customer(self, st: Cust | None, msg: Any, t: float, out: Outbox,
                    mark: ErasureMark | None) -> Cust | None:
        out.decisions.append(("k", f"{msg}@{t}"))  # type: ignore[arg-type]
        if msg == self.fail_on:
            raise KeyError("the input's own id")
        if msg == "erase":
            return None
        st = st or Cust()
        st.seen.append((msg, mark))
        if isinstance(msg, tuple) and msg[0] == "due":
            st.due = msg[1]
        return st

    def advance_customer(self, st: Cust, now: float, out: Outbox) -> Cust:
        out.intents.append(("k", f"fired@{now}"))  # type: ignore[arg-type]
        if self.fail_on == "timer":
            raise ValueError("broken trigger")
        st.due = None
        return st

    def next_due(self, st: Cust) -> float | None:
        return st.due

    def held_skus(self, st: Cust) -> set[str]:
        return st.skus

    def live_mark(self, scope: str, key: str, now: float, get: Any, forget: Any
                  ) -> ErasureMark | None:
        self.marks_looked_up.append(key)
        found: ErasureMark | None = get(f"mark:{key}")
        return found


def _customers(engine: StandIn, **kwargs: Any) -> tuple[Scope[Cust], DictStore[Cust]]:
    store: DictStore[Cust] = DictStore()
    scope: Scope[Cust] = Scope(engine, "customer", store, TimerIndex(), DictMarks(),  # type: ignore[arg-type]
                               HolderIndex(), **kwargs)
    return scope, store


def test_a_key_without_state_is_looked_up_among_the_marks_only_when_there_are_any() -> None:
    engine = StandIn()
    scope, store = _customers(engine)
    out = Outbox()
    scope.apply("c1", "consent", 1.0, out)
    assert engine.marks_looked_up == []  # no mark at all: no lookup
    mark = ErasureMark(0.5)
    keep_local(ERASED, "mark:c2", mark, scope.marks, None)
    scope.apply("c2", "consent", 2.0, out)
    scope.apply("c2", "again", 3.0, out)  # it has state now: no lookup
    assert engine.marks_looked_up == ["c2"]
    assert store.data["c2"].seen == [("consent", mark), ("again", None)]


def test_a_failed_step_drops_only_its_own_outputs_and_reaches_the_handler() -> None:
    engine = StandIn()
    failures: list[tuple[str, str, object, str]] = []
    scope, store = _customers(
        engine, on_error=lambda s, k, item, exc: failures.append((s, k, item, type(exc).__name__)))
    out = Outbox()
    scope.apply("c1", "first", 1.0, out)
    engine.fail_on = "poison"
    scope.apply("c1", "poison", 2.0, out)
    assert out.decisions == [("k", "first@1.0")]  # the failed step's decision is gone
    assert failures == [("customer", "c1", "poison", "KeyError")]
    assert [m for m, _ in store.data["c1"].seen] == ["first"]


def test_without_a_handler_a_failed_step_raises() -> None:
    engine = StandIn()
    engine.fail_on = "poison"
    scope, _ = _customers(engine)
    with pytest.raises(KeyError):
        scope.apply("c1", "poison", 1.0, Outbox())


def test_only_shopper_activity_or_an_unscheduled_key_moves_a_customer_timer() -> None:
    engine = StandIn()
    scope, _ = _customers(engine)
    out = Outbox()
    scope.apply("c1", ("due", 50.0), 1.0, out)  # not scheduled yet: scheduled
    assert scope.timers.scheduled == {"c1": 50.0}
    scope.apply("c1", ("due", 40.0), 2.0, out)  # a consent, say: cannot bring it earlier
    assert scope.timers.scheduled == {"c1": 50.0}
    fact = SessionFact("c1", "s1", None)  # type: ignore[arg-type]
    scope.store.load("c1").due = 30.0  # type: ignore[union-attr]
    scope.apply("c1", fact, 3.0, out)  # activity: rescheduled, earlier
    assert scope.timers.scheduled == {"c1": 30.0}
    scope.apply("c1", "erase", 4.0, out)
    assert "c1" not in scope.timers and scope.store.load("c1") is None


def test_fire_yields_each_due_key_after_its_step_and_a_failing_timer_skips_its_key() -> None:
    engine = StandIn()
    failures: list[str] = []
    scope, store = _customers(engine, on_error=lambda s, k, item, exc: failures.append(k))
    out = Outbox()
    for key, due in (("b", 20.0), ("a", 10.0), ("c", 99.0)):
        scope.apply(key, ("due", due), 0.0, out)
    out.clear()
    fired = []
    for due in scope.fire(25.0, out):
        fired.append((due, list(out.intents)))
        out.clear()
    assert fired == [(10.0, [("k", "fired@10.0")]), (20.0, [("k", "fired@20.0")])]
    scope.apply("d", ("due", 30.0), 26.0, out)
    out.clear()
    engine.fail_on = "timer"
    assert list(scope.fire(35.0, out)) == []
    assert failures == ["d"] and out.intents == []  # its outputs dropped, the key kept
    assert store.data["d"].due == 30.0


def test_a_signal_reaches_every_holder_and_a_restored_key_holds_its_skus() -> None:
    engine = StandIn()
    scope, _ = _customers(engine)
    scope.restore("c1", Cust(due=5.0, skus={"sku-1"}))
    keep_local(INDEX, "sku-1", CartIndex("sku-1", "c2", True, 1.0), scope.marks,
               scope.holders)
    assert scope.timers.scheduled == {"c1": 5.0}
    out = Outbox()
    signal = SkuSignal("sku-1", "low_stock", None, "ev-1", 1.0)
    scope.signal(signal, 2.0, out)
    assert [d for _, d in out.decisions] == [f"{signal}@2.0", f"{signal}@2.0"]
    assert keep_local("customer", "c1", signal, scope.marks, scope.holders) is False


# ------------------------------------------------------------ the stream clock's merger

def test_nothing_is_released_until_every_source_has_been_heard_of() -> None:
    merger = EventTimeMerger(("a", "b"))
    assert merger.hold("k1", 5.0, (), "x")
    merger.note("a", 10.0)
    assert merger.watermark() == float("-inf") and list(merger.release()) == []
    merger.note("b", 4.0)
    assert list(merger.release()) == []  # b's clock is behind the input
    merger.note("b", 5.0)
    assert list(merger.release()) == [(5.0, "k1", "x")]


def test_inputs_go_in_time_then_sequence_then_arrival_order_and_clocks_never_go_back() -> None:
    merger = EventTimeMerger(("a",))
    for key, ts, seq in (("late", 3.0, (1,)), ("second", 2.0, (7, 2)), ("first", 2.0, (7, 1)),
                         ("tie-1", 2.5, ()), ("tie-2", 2.5, ())):
        merger.hold(key, ts, seq, key)
    merger.note("a", 2.5)
    merger.note("a", 1.0)  # an older clock changes nothing
    assert [key for _, key, _ in merger.release()] == ["first", "second", "tie-1", "tie-2"]
    assert merger.sources == {"a": 2.5}
    merger.note("a", 3.0)
    assert [key for _, key, _ in merger.release()] == ["late"]


@given(st.lists(st.tuples(st.sampled_from("abcz"), st.integers(0, 6)), max_size=30))
def test_the_watermark_is_always_the_earliest_source_clock(notes: list[tuple[str, int]]) -> None:
    # "z" is no source of this merger: hearing of it moves nothing
    merger: EventTimeMerger[str] = EventTimeMerger(("a", "b", "c"))
    clocks: dict[str, float] = {}
    for source, ts in notes:
        merger.note(source, float(ts))
        clocks[source] = max(clocks.get(source, float("-inf")), float(ts))
        expected = min(clocks.get(name, float("-inf")) for name in "abc")
        assert merger.watermark() == expected


def test_a_redelivery_while_waiting_is_held_once_and_can_wait_again_once_released() -> None:
    merger = EventTimeMerger(("a",))
    assert merger.hold("k", 1.0, (), "x")
    assert not merger.hold("k", 1.0, (), "x")
    merger.note("a", 1.0)
    assert len(list(merger.release())) == 1
    assert merger.hold("k", 2.0, (), "x")
