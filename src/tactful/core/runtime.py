"""What replay and the worker share around the engine: the timer index, the holder
index and the walk over due keys.

The engine decides; a runtime feeds it. ``tactful replay`` (``core.pipeline``) keeps
every key in one process, the worker (``service.worker``) one index per partition it
owns, rebuilt from its tables on assignment. Both schedule and fire timers, and fan
stock and price signals out to cart holders, through these classes, so the rules for
when a key is due and who holds a sku exist once.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Hashable, Iterator
from typing import Any, Generic, TypeVar

from tactful.core.messages import CartIndex

K = TypeVar("K", bound=Hashable)


class TimerIndex(Generic[K]):
    """The earliest known due time of each key, in a heap.

    ``schedule`` pushes an entry only when a key's due time moves earlier; one that
    moves later keeps its entry, and when that comes up the caller (``due``) finds the
    key's actual due time and schedules it again. The heap then holds about one entry
    per key however often its due time moves on (a session's expiry moves with every
    event). Keys must be orderable among equal due times (strings, tuples of them).
    """

    __slots__ = ("heap", "scheduled")

    def __init__(self) -> None:
        self.heap: list[tuple[float, K]] = []
        self.scheduled: dict[K, float] = {}

    def __len__(self) -> int:
        return len(self.scheduled)

    def __contains__(self, key: object) -> bool:
        return key in self.scheduled

    def schedule(self, key: K, due: float | None) -> None:
        if due is None:
            return  # a stale entry, if any, is dropped when it comes up
        known = self.scheduled.get(key)
        if known is None or due < known:
            self.scheduled[key] = due
            heapq.heappush(self.heap, (due, key))

    def forget(self, key: K) -> None:
        """The key is gone: its entry, if any, is dropped when it comes up."""
        self.scheduled.pop(key, None)

    def next_time(self) -> float | None:
        """The earliest entry's time (maybe a stale one: never later than the truth)."""
        return self.heap[0][0] if self.heap else None

    def pop_due(self, now: float) -> tuple[float, K] | None:
        """The earliest key scheduled by ``now``, or None. Callers loop: firing one key
        may schedule another due time that is also past ``now``."""
        heap, scheduled = self.heap, self.scheduled
        while heap and heap[0][0] <= now:
            due, key = heapq.heappop(heap)
            if scheduled.get(key) == due:
                del scheduled[key]
                return due, key
        return None

    def due(
        self, now: float, load: Callable[[K], Any], next_due: Callable[[Any], float | None],
    ) -> Iterator[tuple[float, K, Any]]:
        """Each key whose trigger is due by ``now``, in time order, with its state
        (``load``): a key whose due time moved later since it was queued is queued
        again instead; a key without state any more is dropped. The caller fires it and
        schedules its next due time before asking for the next key."""
        while (entry := self.pop_due(now)) is not None:
            due, key = entry
            state = load(key)
            if state is None:
                continue
            actual = next_due(state)
            if actual is None:
                continue
            if actual > due:
                self.schedule(key, actual)
                continue
            yield due, key, state


class HolderIndex:
    """Which customers hold which sku in some cart: derived from customer state, kept
    up to date by the engine's ``CartIndex`` messages. The sku scope knows no customer,
    so a stock or price signal reaches its holders through this index."""

    __slots__ = ("by_sku",)

    def __init__(self) -> None:
        self.by_sku: dict[str, dict[str, None]] = {}

    def apply(self, msg: CartIndex) -> None:
        if msg.holding:
            self.add(msg.sku, msg.customer_id)
            return
        held = self.by_sku.get(msg.sku)
        if held is not None:
            held.pop(msg.customer_id, None)
            if not held:
                del self.by_sku[msg.sku]

    def add(self, sku: str, customer_id: str) -> None:
        self.by_sku.setdefault(sku, {})[customer_id] = None

    def holders(self, sku: str) -> list[str]:
        """The holders in the order they started holding (a copy: firing one may change
        the index)."""
        return list(self.by_sku.get(sku, ()))
