"""The timer and holder indexes replay and the worker share (core.runtime)."""

from __future__ import annotations

from tactful.core.messages import CartIndex
from tactful.core.runtime import HolderIndex, TimerIndex


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
