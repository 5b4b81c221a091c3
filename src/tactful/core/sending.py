"""What a sender does with an intent (SPEC §2, README "Reference sender"): pure.

Given an intent's delivery window, what the sender already holds about its id, and
``now`` (POSIX seconds, passed in), ``decide`` says deliver, wait until a moment,
drop it as stale, skip it as cancelled, or skip it as already handled. After an
attempt, ``after_attempt`` says what becomes of it (done, retry at a moment, or
stale). ``CommitLedger`` tracks, per partition, which offsets are settled, so that an
intent's offset is committed only once the intent is delivered, dropped or cancelled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from tactful.core.events import Bounced, Delivered, FeedbackEvent
from tactful.core.outputs import ContactIntent, stable_id

# What the sender holds about an intent id (kept durably, see README):
#   sending    claimed before an attempt; when a restart finds it, the outcome is
#              unknown and the intent is not attempted again (at most once)
#   retry      an attempt failed with a temporary error: nothing was sent, it may be tried
#   delivered, bounced, stale, cancelled, no_address: final
State = Literal["sending", "retry", "delivered", "bounced", "stale", "cancelled", "no_address"]
STATES: tuple[State, ...] = (
    "sending", "retry", "delivered", "bounced", "stale", "cancelled", "no_address",
)
FINAL: frozenset[State] = frozenset(
    {"sending", "delivered", "bounced", "stale", "cancelled", "no_address"})


@dataclass(frozen=True, slots=True)
class Deliver:
    pass


@dataclass(frozen=True, slots=True)
class Wait:
    until: float  # POSIX seconds


@dataclass(frozen=True, slots=True)
class Stale:
    pass


@dataclass(frozen=True, slots=True)
class Skip:
    """Nothing to do: cancelled, or already attempted or settled (``state`` says which)."""

    state: State


Verdict = Deliver | Wait | Stale | Skip


def parse_time(text: str) -> float:
    """An RFC 3339 time of an intent as POSIX seconds (``ValueError`` when it is not)."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        raise ValueError(f"time without an offset: {text!r}")
    return dt.timestamp()


@dataclass(frozen=True, slots=True)
class Window:
    send_after: float
    send_before: float

    @classmethod
    def of(cls, intent: ContactIntent) -> Window:
        return cls(parse_time(intent.send_after), parse_time(intent.send_before))


def decide(window: Window, held: State | None, now: float) -> Verdict:
    """What to do with an intent now. ``held`` is what the sender holds about its id."""
    if held is not None and held in FINAL:
        return Skip(held)
    if now > window.send_before:
        return Stale()
    if now < window.send_after:
        return Wait(window.send_after)
    return Deliver()


# --- after an attempt ---------------------------------------------------------

# delivered    the server accepted the message
# bounced      the server refused it for good (5xx on the recipient or the message)
# temporary    the server refused it for now (4xx on the recipient or the message)
# unavailable  no server to talk to, or it refused the sender or the login: nothing was
#              sent and the recipient is not at fault (retried until ``send_before``)
# unknown      the connection failed while the message was being sent: it may have been
#              delivered, so it is never attempted again
Result = Literal["delivered", "bounced", "temporary", "unavailable", "unknown"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff after a temporary failure (an SMTP 4xx, no server):
    ``base * 2**(attempt-1)``, at most ``cap`` seconds. A message the server keeps
    refusing for now is given up as bounced after ``attempts``; an unavailable server is
    tried again without a limit. A retry that would fall after ``send_before`` is not
    made (the intent is stale)."""

    base: float = 5.0
    cap: float = 600.0
    attempts: int = 8

    def delay(self, attempt: int) -> float:
        return min(self.cap, self.base * 2.0 ** max(0, attempt - 1))


@dataclass(frozen=True, slots=True)
class Settle:
    """The attempt is over: ``state`` is final."""

    state: State


@dataclass(frozen=True, slots=True)
class RetryAt:
    at: float


def after_attempt(result: Result, attempt: int, window: Window, now: float,
                  retry: RetryPolicy) -> Settle | RetryAt:
    """What becomes of an intent after its ``attempt``-th attempt (1-based)."""
    if result == "delivered":
        return Settle("delivered")
    if result == "bounced":
        return Settle("bounced")
    if result == "unknown":  # it may have been delivered: never attempted again
        return Settle("sending")
    at = now + retry.delay(attempt)
    if result == "temporary" and attempt >= retry.attempts:
        return Settle("bounced")
    if at > window.send_before:
        return Settle("stale")
    return RetryAt(at)


# --- cancellations ------------------------------------------------------------

CancelEffect = Literal["prevented", "after_delivery", "ahead_of_intent", "repeat"]


def cancel_effect(held: State | None) -> CancelEffect:
    """What a cancellation does, given what the sender holds about its intent: it
    prevents a delivery not yet attempted (also one it reaches before its intent), and
    is only recorded once an attempt has been made."""
    if held is None:
        return "ahead_of_intent"
    if held in ("delivered", "bounced", "sending"):
        return "after_delivery"
    if held in ("cancelled", "stale", "no_address"):
        return "repeat"
    return "prevented"  # retry: waiting for its next attempt


# --- feedback -----------------------------------------------------------------


def feedback(intent: ContactIntent, state: State, now: float) -> FeedbackEvent | None:
    """The feedback event an attempt's outcome gives (``delivered`` or ``bounced``),
    or None. Its ``event_id`` derives from the intent id and type, so a repeat after a
    restart is dropped by the worker's deduplication."""
    cls: type[Delivered] | type[Bounced]
    if state == "delivered":
        cls = Delivered
    elif state == "bounced":
        cls = Bounced
    else:
        return None
    return cls(
        event_id=stable_id("snd", intent.intent_id, state),
        ts=datetime.fromtimestamp(now, UTC),
        customer_id=intent.customer_id,
        channel=intent.channel,  # type: ignore[arg-type]
        intent_id=intent.intent_id,
    )


# --- commits ------------------------------------------------------------------


@dataclass(slots=True)
class CommitLedger:
    """The offsets of one partition that were read and not yet settled. The offset to
    commit is the lowest unsettled one (everything before it is settled), or one past
    the last read when every offset is settled: a waiting intent holds the commit back,
    and after a restart the records from it on are read again (the durable state
    absorbs the repeats)."""

    open: set[int] = field(default_factory=set)
    next_offset: int | None = None  # one past the highest offset read
    committed: int | None = None

    def read(self, offset: int) -> None:
        self.open.add(offset)
        if self.next_offset is None or offset >= self.next_offset:
            self.next_offset = offset + 1

    def settle(self, offset: int) -> None:
        self.open.discard(offset)

    def committable(self) -> int | None:
        """The offset to commit when it moved forward since the last ``mark``, else None."""
        if self.next_offset is None:
            return None
        target = min(self.open) if self.open else self.next_offset
        if self.committed is not None and target <= self.committed:
            return None
        return target

    def mark(self, offset: int) -> None:
        self.committed = offset
