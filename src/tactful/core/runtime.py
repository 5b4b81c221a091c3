"""The runtime replay and the worker share around the engine: the scopes that drive it,
the timer index, the holder index and the erasure marks.

The engine decides; a runtime feeds it. A ``Scope`` is every step of one scope's keys:
the erasure-mark lookup of a key without state, the engine's call, the store, the timer
and holder indexes, and what a failed step leaves (the key rolled back, its outputs
dropped, the error handed to ``on_error``). ``tactful replay`` (``core.pipeline``) drives
one scope of each kind over dicts and delivers the messages between them in-process; the
worker (``service.worker``) drives one per partition it owns, over its tables, and sends
them over internal topics. The rules for what a step does to the store and the timers,
and for which messages stay where they were made (``keep_local``), exist once.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Hashable, Iterator
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from tactful.core.events import PriceChange, StockLevel
from tactful.core.messages import AdoptSession, CartIndex, ErasureMark, SessionFact, SkuSignal
from tactful.core.rules.delivery import ERASED, INDEX, SKU, Outbox
from tactful.core.state import SkuState

if TYPE_CHECKING:
    from tactful.core.engine import Engine

K = TypeVar("K", bound=Hashable)
NEG_INF = float("-inf")


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


S = TypeVar("S")
OnError = Callable[[str, str, object | None, Exception], None]
"""What a runtime does with a step the engine failed on: (scope, key, input or None for
a timer, error). The key is back at its last good state and the step's outputs are
dropped; without a handler the error is raised."""


class Store(Protocol[S]):
    """A scope's keys as a runtime reads and writes them."""

    def load(self, key: str) -> S | None: ...

    def save(self, key: str, state: S | None) -> None:
        """The key's state after a successful step (None: delete the key)."""

    def rollback(self, key: str) -> None:
        """Back to the state of the key's last successful step."""


class DictStore(Generic[S]):
    """Every key in a dict (replay). A failed step is not rolled back: replay keeps the
    state in place, as the keys it touched were left (docs/semantics.md)."""

    __slots__ = ("data",)

    def __init__(self) -> None:
        self.data: dict[str, S] = {}

    def load(self, key: str) -> S | None:
        return self.data.get(key)

    def save(self, key: str, state: S | None) -> None:
        if state is None:
            self.data.pop(key, None)
        else:
            self.data[key] = state

    def rollback(self, key: str) -> None:
        return


class Marks(Protocol):
    """The erasure marks, by their keyed hash (``ErasureKeys.mark``)."""

    def may_hold(self) -> bool:
        """False only when there is certainly no mark (a lookup can then be skipped)."""

    def get(self, stored: str) -> ErasureMark | None: ...

    def put(self, stored: str, mark: ErasureMark) -> None: ...

    def forget(self, stored: str) -> None: ...


class DictMarks:
    """Every erasure mark in a dict (replay)."""

    __slots__ = ("data",)

    def __init__(self) -> None:
        self.data: dict[str, ErasureMark] = {}

    def may_hold(self) -> bool:
        return bool(self.data)

    def get(self, stored: str) -> ErasureMark | None:
        return self.data.get(stored)

    def put(self, stored: str, mark: ErasureMark) -> None:
        self.data[stored] = mark

    def forget(self, stored: str) -> None:
        del self.data[stored]


def failed_step(store: Store[Any], scope: str, key: str, item: object | None,
                exc: Exception, out: Outbox, kept: tuple[int, int, int],
                on_error: OnError | None) -> None:
    """What a failed step leaves: the key rolled back, the step's outputs (those after
    ``kept``) dropped, and the error handed to ``on_error``, or raised without one."""
    store.rollback(key)
    del out.intents[kept[0]:], out.decisions[kept[1]:], out.internal[kept[2]:]
    if on_error is None:
        raise exc
    on_error(scope, key, item, exc)


class Scope(Generic[S]):
    """One scope's keys with timers (session or customer): on one partition in the
    worker, all of them in replay. Every step of the scope goes through here: the
    erasure-mark lookup of a key without state, the engine's call, the store, the timer
    index (and, for customers, the holder index), and what happens when the engine fails.

    ``tag`` is None when the timer index is the scope's own (the worker: one per scope
    and partition); replay shares one index between its scopes, keyed ``(tag, key)``, so
    that timers fire in one time order across them.
    """

    __slots__ = ("engine", "holders", "marks", "name", "on_error", "store", "tag", "timers")

    def __init__(self, engine: Engine, name: str, store: Store[S], timers: TimerIndex[Any],
                 marks: Marks, holders: HolderIndex | None = None, tag: str | None = None,
                 on_error: OnError | None = None) -> None:
        self.engine, self.name, self.store, self.timers = engine, name, store, timers
        self.marks, self.holders, self.tag, self.on_error = marks, holders, tag, on_error

    def _timer_key(self, key: str) -> Any:
        return key if self.tag is None else (self.tag, key)

    def _failed(self, key: str, item: object | None, exc: Exception, out: Outbox,
                kept: tuple[int, int, int]) -> None:
        failed_step(self.store, self.name, key, item, exc, out, kept, self.on_error)

    def _mark(self, key: str, now: float) -> ErasureMark | None:
        marks = self.marks
        if not marks.may_hold():
            return None
        return self.engine.live_mark(self.name, key, now, marks.get, marks.forget)

    def restore(self, key: str, state: S) -> None:
        """A key found in the store when the scope is taken on (a worker's assignment):
        its timer, and the skus it holds."""
        self.timers.schedule(self._timer_key(key), self.engine.next_due(state))  # type: ignore[arg-type]
        if self.holders is not None:
            for sku in self.engine.held_skus(state):  # type: ignore[arg-type]
                self.holders.add(sku, key)

    def apply(self, key: str, msg: Any, t: float, out: Outbox) -> None:
        """One input (an event or a message from another scope) to ``key``."""
        store = self.store
        state = store.load(key)
        mark = self._mark(key, t) if state is None else None
        kept = len(out.intents), len(out.decisions), len(out.internal)
        engine = self.engine
        new: Any
        try:
            if self.holders is None:
                new = engine.on_session(state, msg, t, out, mark)  # type: ignore[arg-type]
            else:
                new = engine.on_customer(state, msg, t, out, mark)  # type: ignore[arg-type]
        except Exception as exc:  # the engine is pure: its error is this input's
            self._failed(key, msg, exc, out, kept)
            return
        store.save(key, new)
        timer_key = key if self.tag is None else (self.tag, key)
        if new is None:
            self.timers.forget(timer_key)
        elif self.holders is None:
            # A session's expiry never moves earlier: with no cart and no views, nothing
            # else is pending.
            if new.carts or new.views or timer_key not in self.timers:
                self.timers.schedule(timer_key, engine.next_due(new))
        elif isinstance(msg, SessionFact | AdoptSession) or timer_key not in self.timers:
            # Only shopper activity brings a customer's due time earlier; the rest only
            # ends triggers (a stale entry is dropped when it comes up).
            self.timers.schedule(timer_key, engine.next_due(new))

    def signal(self, msg: SkuSignal, t: float, out: Outbox) -> None:
        """A stock or price signal to every customer of the scope holding its sku."""
        assert self.holders is not None
        for holder in self.holders.holders(msg.sku):
            self.apply(holder, msg, t, out)

    def advance(self, key: str, state: S, due: float, out: Outbox) -> bool:
        """A key whose trigger is due (``TimerIndex.due`` found it): False if it failed."""
        kept = len(out.intents), len(out.decisions), len(out.internal)
        engine = self.engine
        new: Any
        try:
            if self.holders is None:
                new = engine.advance_session(state, due, out)  # type: ignore[arg-type]
            else:
                new = engine.advance_customer(state, due, out)  # type: ignore[arg-type]
        except Exception as exc:
            # No input to dead-letter: the key keeps its state and waits for its next
            # input (which reschedules it); the other keys go on.
            self._failed(key, None, exc, out, kept)
            return False
        self.store.save(key, new)
        timer_key = key if self.tag is None else (self.tag, key)
        if new is None:
            self.timers.forget(timer_key)
        else:
            self.timers.schedule(timer_key, engine.next_due(new))
        return True

    def fire(self, now: float, out: Outbox) -> Iterator[float]:
        """Every key of the scope's own timer index due by ``now``, in time order; yields
        each due time after its step, with the step's outputs in ``out``."""
        store = self.store
        for due, key, state in self.timers.due(now, store.load, self.engine.next_due):
            if self.advance(key, state, due, out):
                yield due


class SkuScope:
    """The sku keys (stock and price): no timers, no marks."""

    __slots__ = ("engine", "on_error", "store")

    def __init__(self, engine: Engine, store: Store[SkuState],
                 on_error: OnError | None = None) -> None:
        self.engine, self.store, self.on_error = engine, store, on_error

    def apply(self, msg: StockLevel | PriceChange, t: float, out: Outbox) -> None:
        key = msg.sku
        kept = len(out.intents), len(out.decisions), len(out.internal)
        try:
            new = self.engine.on_sku(self.store.load(key), msg, t, out)
        except Exception as exc:  # the engine is pure: its error is this input's
            failed_step(self.store, SKU, key, msg, exc, out, kept, self.on_error)
            return
        self.store.save(key, new)


def keep_local(scope: str, key: str, msg: object, marks: Marks,
               holders: HolderIndex | None) -> bool:
    """Apply an internal message that stays where it was made: an erasure mark (in the
    partition of the key it marks) and a holder-index change (the customer's partition).
    False for one that goes to another scope."""
    if scope == ERASED:
        assert isinstance(msg, ErasureMark)
        marks.put(key, msg)
        return True
    if scope == INDEX:
        assert isinstance(msg, CartIndex) and holders is not None
        holders.apply(msg)
        return True
    return False


class EventTimeMerger(Generic[K]):
    """Inputs from many upstream partitions, applied in event-time order (the worker's
    stream clock, on a customer partition): each waits until every source's clock (its
    watermark) has reached its time; equal times go in (sequence, arrival) order, the
    order replay reads them in. ``sources`` is each source's clock, never moving back,
    and moved only through ``note`` once given here (the watermark is kept between them).
    What waits is in memory here; a driver that must survive a crash keeps it durable
    (the worker's ``pending`` table) and holds it again on recovery."""

    __slots__ = ("buffer", "held", "mark", "names", "order", "sources")

    def __init__(self, names: tuple[str, ...], sources: dict[str, float] | None = None) -> None:
        self.names = names
        self.sources: dict[str, float] = {} if sources is None else sources
        self.buffer: list[tuple[float, tuple[int, ...], int, K, object]] = []
        self.held: set[K] = set()
        self.order = 0
        self.mark: float | None = None  # the watermark, None until computed again

    def note(self, source: str, ts: float) -> None:
        """A source's clock has reached ``ts`` (an older time changes nothing)."""
        sources = self.sources
        known = sources.get(source)
        if known is None or ts > known:
            sources[source] = ts
            mark = self.mark
            if mark is not None and (known is None or known <= mark):
                self.mark = None  # it may have been the earliest: the watermark may move

    def watermark(self) -> float:
        """The earliest of the sources' clocks: -inf until every one has been heard of.
        Computed again only after a source that may have been the earliest moved."""
        mark = self.mark
        if mark is None:
            get = self.sources.get
            mark = self.mark = min(get(name, NEG_INF) for name in self.names)
        return mark

    def hold(self, key: K, ts: float, seq: tuple[int, ...], item: object) -> bool:
        """Keep ``item`` until the watermark passes ``ts``; False when ``key`` waits
        already (a redelivery)."""
        if key in self.held:
            return False
        self.held.add(key)
        self.order += 1
        heapq.heappush(self.buffer, (ts, seq, self.order, key, item))
        return True

    def release(self) -> Iterator[tuple[float, K, object]]:
        """Each input the watermark has passed, in order: (time, key, item)."""
        mark = self.watermark()
        buffer = self.buffer
        while buffer and buffer[0][0] <= mark:
            ts, _, _, key, item = heapq.heappop(buffer)
            self.held.discard(key)
            yield ts, key, item
