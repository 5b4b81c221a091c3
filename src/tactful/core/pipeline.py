"""The whole engine in one process: the three scopes wired together, with a timer heap.

This is how ``tactful replay`` runs the engine without Kafka; the worker runs
the same ``Engine`` methods per table instead, and moves ``Outbox.internal``
messages over internal topics.
"""

from __future__ import annotations

from tactful.core.engine import CUSTOMER, ERASED, HOLDERS, INDEX, SESSION, Engine, Outbox
from tactful.core.events import (
    ConsentEvents,
    CustomerEvent,
    Event,
    PriceChange,
    StockLevel,
    StorefrontEvent,
    StorefrontEvents,
)
from tactful.core.messages import (
    AdoptSession,
    CartIndex,
    EraseSession,
    ErasureMark,
    SessionFact,
    SkuSignal,
)
from tactful.core.runtime import HolderIndex, TimerIndex
from tactful.core.state import CustomerState, SessionState, SkuState

__all__ = ["ConsentEvents", "Pipeline"]


class Pipeline:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions: dict[str, SessionState] = {}
        self.customers: dict[str, CustomerState] = {}
        self.skus: dict[str, SkuState] = {}
        self.holders = HolderIndex()
        self.erasures: dict[str, ErasureMark] = {}  # erasure_key -> mark
        self.clock = float("-inf")
        self.timers: TimerIndex[tuple[str, str]] = TimerIndex()

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
            self._session(event.session_id, event, t, out)  # type: ignore[arg-type]
        elif isinstance(event, StockLevel | PriceChange):
            self._sku(event.sku, event, t, out)
        else:
            assert isinstance(event, CustomerEvent)
            self._customer(event.customer_id, event, t, out)
        self._drain(t, out)

    def advance(self, now: float, out: Outbox) -> None:
        """Move the clock to ``now`` (never back), firing due triggers in time order."""
        for due, (_, key), state in self.timers.due(now, self._state, self.engine.next_due):
            self.clock = max(self.clock, due)
            if isinstance(state, CustomerState):
                self.engine.advance_customer(state, due, out)
                self._reschedule(CUSTOMER, key, state)
            else:
                kept = self.engine.advance_session(state, due, out)
                self._store_session(key, kept)
            self._drain(due, out)
        self.clock = max(self.clock, now)

    def _state(self, entry: tuple[str, str]) -> CustomerState | SessionState | None:
        scope, key = entry
        return self.customers.get(key) if scope == CUSTOMER else self.sessions.get(key)

    def _drain(self, t: float, out: Outbox) -> None:
        internal = out.internal
        index = 0
        while index < len(internal):
            scope, key, msg = internal[index]
            index += 1
            if scope == CUSTOMER:
                self._customer(key, msg, t, out)
            elif scope == HOLDERS:
                assert isinstance(msg, SkuSignal)
                for customer_id in self.holders.holders(key):
                    self._customer(customer_id, msg, t, out)
            elif scope == ERASED:
                assert isinstance(msg, ErasureMark)
                self.erasures[key] = msg
            elif scope == INDEX:
                assert isinstance(msg, CartIndex)
                self.holders.apply(msg)
            else:
                assert isinstance(msg, EraseSession)
                self._session(key, msg, t, out)
        internal.clear()

    def _session(
        self, key: str, msg: StorefrontEvents | EraseSession, t: float, out: Outbox
    ) -> None:
        state = self.sessions.get(key)
        mark = self._mark("session", key, t) if state is None and self.erasures else None
        kept = self.engine.on_session(state, msg, t, out, mark)
        self._store_session(key, kept)

    def _store_session(self, key: str, state: SessionState | None) -> None:
        if state is None:
            self.sessions.pop(key, None)
            self.timers.forget((SESSION, key))
        else:
            self.sessions[key] = state
            self._reschedule(SESSION, key, state)

    def _customer(self, key: str, msg: object, t: float, out: Outbox) -> None:
        state = self.customers.get(key)
        mark = self._mark("customer", key, t) if state is None and self.erasures else None
        kept = self.engine.on_customer(state, msg, t, out, mark)
        if kept is None:
            self.customers.pop(key, None)
            self.timers.forget((CUSTOMER, key))
        else:
            self.customers[key] = kept
            # Only shopper activity can bring a due time earlier; the rest only ends triggers.
            active = isinstance(msg, SessionFact | AdoptSession)
            if active or (CUSTOMER, key) not in self.timers:
                self._reschedule(CUSTOMER, key, kept)

    def _mark(self, scope: str, key: str, now: float) -> ErasureMark | None:
        return self.engine.live_mark(scope, key, now, self.erasures.get,
                                     self.erasures.__delitem__)

    def _sku(self, key: str, msg: StockLevel | PriceChange, t: float, out: Outbox) -> None:
        self.skus[key] = self.engine.on_sku(self.skus.get(key), msg, t, out)

    def _reschedule(self, scope: str, key: str, state: SessionState | CustomerState) -> None:
        if scope == SESSION and not state.carts and not state.views and (scope, key) in self.timers:
            return  # only its expiry, which never moves earlier
        self.timers.schedule((scope, key), self.engine.next_due(state))
