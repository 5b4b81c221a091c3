"""The whole engine in one process: the three scopes of ``core.runtime`` wired together.

This is how ``tactful replay`` runs the engine without Kafka. The worker drives the same
scopes, one per partition, and moves the messages between them over internal topics;
here they are delivered in-process, in the order they were made, and one timer index
over both scopes fires every trigger in one time order.
"""

from __future__ import annotations

from typing import Any

from tactful.core.engine import CUSTOMER, HOLDERS, SESSION, Engine, Outbox
from tactful.core.events import (
    ConsentEvents,
    CustomerEvent,
    Event,
    PriceChange,
    StockLevel,
    StorefrontEvent,
)
from tactful.core.messages import SkuSignal
from tactful.core.runtime import (
    DictMarks,
    DictStore,
    HolderIndex,
    Scope,
    SkuScope,
    TimerIndex,
    keep_local,
)
from tactful.core.state import CustomerState, SessionState, SkuState

__all__ = ["ConsentEvents", "Pipeline"]


class Pipeline:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.clock = float("-inf")
        self.timers: TimerIndex[tuple[str, str]] = TimerIndex()
        self.holders = HolderIndex()
        self.marks = DictMarks()
        session_store: DictStore[SessionState] = DictStore()
        customer_store: DictStore[CustomerState] = DictStore()
        sku_store: DictStore[SkuState] = DictStore()
        self.session = Scope(engine, SESSION, session_store, self.timers, self.marks,
                             tag=SESSION)
        self.customer = Scope(engine, CUSTOMER, customer_store, self.timers, self.marks,
                              self.holders, tag=CUSTOMER)
        self.sku = SkuScope(engine, sku_store)
        self.sessions = session_store.data
        self.customers = customer_store.data
        self.skus = sku_store.data
        self.erasures = self.marks.data  # erasure_key -> mark

    @property
    def engine(self) -> Engine:
        return self._engine

    @engine.setter
    def engine(self, engine: Engine) -> None:
        """Another engine for the same state (a policy or secret change mid-run)."""
        self._engine = self.session.engine = self.customer.engine = self.sku.engine = engine

    def feed(self, event: Event, out: Outbox, t: float | None = None) -> None:
        """Apply one event: first fire everything due by its timestamp (``t``, if known)."""
        if t is None:
            t = event.ts.timestamp()
        first = self.timers.next_time()
        if first is not None and first <= t:
            self.advance(t, out)
        elif t > self.clock:
            self.clock = t
        if isinstance(event, StorefrontEvent):
            self.session.apply(event.session_id, event, t, out)
        elif isinstance(event, StockLevel | PriceChange):
            self.sku.apply(event, t, out)
        else:
            assert isinstance(event, CustomerEvent)
            self.customer.apply(event.customer_id, event, t, out)
        self._drain(t, out)

    def advance(self, now: float, out: Outbox) -> None:
        """Move the clock to ``now`` (never back), firing due triggers in time order."""
        for due, (tag, key), state in self.timers.due(now, self._state, self.engine.next_due):
            self.clock = max(self.clock, due)
            scope: Scope[Any] = self.customer if tag == CUSTOMER else self.session
            scope.advance(key, state, due, out)
            self._drain(due, out)
        self.clock = max(self.clock, now)

    def _state(self, entry: tuple[str, str]) -> CustomerState | SessionState | None:
        tag, key = entry
        return self.customers.get(key) if tag == CUSTOMER else self.sessions.get(key)

    def _drain(self, t: float, out: Outbox) -> None:
        """Deliver the messages between scopes, and those they lead to, in order."""
        internal = out.internal
        index = 0
        while index < len(internal):
            scope, key, msg = internal[index]
            index += 1
            if keep_local(scope, key, msg, self.marks, self.holders):
                continue
            if scope == CUSTOMER:
                self.customer.apply(key, msg, t, out)
            elif scope == HOLDERS:
                assert isinstance(msg, SkuSignal)
                self.customer.signal(msg, t, out)
            else:
                assert scope == SESSION
                self.session.apply(key, msg, t, out)
        internal.clear()
