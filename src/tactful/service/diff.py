"""``tactful diff``: the same events through two policies, side by side (SPEC §6).

The run feeds one read of the events to two pipelines through ``replay_lines``, so both
policies see exactly the events, rejections and clock that ``tactful replay`` would give
each. What the runs wrote is then compared by plain functions: decision counts by kind,
channel, outcome and reason, and the intents and cancellations only one policy emits.

Intents are compared by what they mean: every field but ``policy_version``, which differs
between two policy files by construction. ``intent_id`` does not depend on the policy, so
an intent both policies emit with different content (a later ``send_after``, other
``reasons``) is listed once on each side, under the same ``intent_id``.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import msgspec

from tactful.adapters.codec import encode
from tactful.core.engine import Engine, Outbox
from tactful.core.events import Event
from tactful.core.outputs import Cancellation, ContactIntent, Decision
from tactful.core.pipeline import Pipeline
from tactful.service.replay import DEFAULT_TAIL, ReplayStats, replay_lines

Record = ContactIntent | Cancellation
Key = tuple[str, str | None, str, str | None]  # kind, channel, outcome, reason

# Rows of one kind and channel read in the order a decision's life runs.
OUTCOME_ORDER = {"emitted": 0, "deferred": 1, "suppressed": 2, "cancelled": 3}
NONE = "-"  # a decision without a channel (suppressed with no channel left) or a reason


@dataclass(slots=True)
class Side:
    """What one policy's run wrote: decision counts, and intents and cancellations in
    emission order."""

    policy_version: str
    decisions: Counter[Key] = field(default_factory=Counter)
    records: list[Record] = field(default_factory=list)

    def count(self, decisions: Iterable[Decision]) -> None:
        for d in decisions:
            self.decisions[(d.kind, d.channel, d.outcome, d.reason)] += 1

    @property
    def intents(self) -> int:
        return sum(1 for r in self.records if isinstance(r, ContactIntent))

    @property
    def cancellations(self) -> int:
        return sum(1 for r in self.records if isinstance(r, Cancellation))


@dataclass(frozen=True, slots=True)
class Row:
    kind: str
    channel: str | None
    outcome: str
    reason: str | None
    a: int
    b: int

    @property
    def change(self) -> int:
        return self.b - self.a


@dataclass(frozen=True, slots=True)
class OneSided:
    """The records only A emits and only B emits, each in its own emission order."""

    a: list[Record]
    b: list[Record]


# ------------------------------------------------------------------- comparison


def content(record: Record) -> bytes:
    """What a record means, as bytes: an intent without its ``policy_version``."""
    if isinstance(record, ContactIntent):
        record = msgspec.structs.replace(record, policy_version="")
    return encode(record)


def one_sided(a: Sequence[Record], b: Sequence[Record]) -> OneSided:
    """Records of each side that the other does not emit, compared by ``content``.

    Counted as multisets: a record A emits twice and B once is once in A's list.
    """
    keys_a = [content(r) for r in a]
    keys_b = [content(r) for r in b]
    return OneSided(_left_over(a, keys_a, Counter(keys_b)),
                    _left_over(b, keys_b, Counter(keys_a)))


def _left_over(records: Sequence[Record], keys: list[bytes], other: Counter[bytes]) -> list[Record]:
    alone: list[Record] = []
    for key, record in zip(keys, records, strict=True):
        if other[key] > 0:
            other[key] -= 1
        else:
            alone.append(record)
    return alone


def _row_order(key: Key) -> tuple[str, str, int, str, str]:
    kind, channel, outcome, reason = key
    return (kind, channel or "", OUTCOME_ORDER.get(outcome, len(OUTCOME_ORDER)), outcome,
            reason or "")


def table_rows(a: Counter[Key], b: Counter[Key]) -> list[Row]:
    """One row per (kind, channel, outcome, reason) that either side counts, sorted by
    kind, channel (none first), outcome (emitted, deferred, suppressed, cancelled), reason
    (none first)."""
    keys = sorted((k for k in a.keys() | b.keys() if a[k] or b[k]), key=_row_order)
    return [Row(*k, a=a[k], b=b[k]) for k in keys]


def _signed(n: int) -> str:
    return f"+{n}" if n > 0 else str(n)


def render_table(rows: Sequence[Row], a: tuple[str, str], b: tuple[str, str]) -> str:
    """The decisions table; ``a`` and ``b`` are each (policy_version, file name)."""
    header = ("kind", "channel", "outcome", "reason", "A", "B", "B-A")
    body = [(r.kind, r.channel or NONE, r.outcome, r.reason or NONE, str(r.a), str(r.b),
             _signed(r.change)) for r in rows]
    total_a, total_b = sum(r.a for r in rows), sum(r.b for r in rows)
    total = ("total", "", "", "", str(total_a), str(total_b), _signed(total_b - total_a))
    lines = [header, *body, total]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]

    def fmt(cells: tuple[str, ...]) -> str:
        text = [c.ljust(w) for c, w in zip(cells[:4], widths[:4], strict=True)]
        numbers = [c.rjust(w) for c, w in zip(cells[4:], widths[4:], strict=True)]
        return "  ".join(text + numbers).rstrip()

    out = [f"A  {a[0]}  ({a[1]})", f"B  {b[0]}  ({b[1]})", ""]
    out += [fmt(line) for line in lines]
    return "\n".join(out) + "\n"


def render_summary(a: Side, b: Side, alone: OneSided) -> str:
    """Intents and cancellations emitted by each side and by one side alone."""
    lines = []
    for name, kind in (("intents", ContactIntent), ("cancellations", Cancellation)):
        only_a = sum(1 for r in alone.a if isinstance(r, kind))
        only_b = sum(1 for r in alone.b if isinstance(r, kind))
        by_a = a.intents if kind is ContactIntent else a.cancellations
        by_b = b.intents if kind is ContactIntent else b.cancellations
        lines.append(f"{name}: A {by_a}, B {by_b}, only A {only_a}, only B {only_b}")
    return "\n".join(lines) + "\n"


def only_line(record: Record, side: str) -> bytes:
    """The record as replay writes it, with ``"only": side`` added: one JSON line."""
    return encode(record)[:-1] + b',"only":"' + side.encode() + b'"}\n'


# ------------------------------------------------------------------------ run


class _Pair:
    """Two pipelines fed the same events, in place of the one ``replay_lines`` drives.

    Their outputs go to each side's own outbox, never to the one ``replay_lines`` passes:
    its sinks stay empty. An input either engine fails on is dropped from both outboxes
    and re-raised, so replay's loop reports it (``processing_error``) as it would its own.
    """

    def __init__(self, a: Engine, b: Engine, side_a: Side, side_b: Side) -> None:
        self.lanes = ((Pipeline(a), Outbox(), side_a), (Pipeline(b), Outbox(), side_b))

    def feed(self, event: Event, out: Outbox, t: float | None = None) -> None:
        try:
            for pipeline, box, _ in self.lanes:
                pipeline.feed(event, box, t)
        except Exception:
            for _, box, _ in self.lanes:
                box.clear()
            raise
        self._take()

    def advance(self, now: float, out: Outbox) -> None:
        for pipeline, box, _ in self.lanes:
            pipeline.advance(now, box)
        self._take()

    def _take(self) -> None:
        for _, box, side in self.lanes:
            if box.decisions:
                side.count(d for _, d in box.decisions)
            if box.intents:
                side.records.extend(r for _, r in box.intents)
            box.clear()


@dataclass(frozen=True, slots=True)
class DiffResult:
    a: Side
    b: Side
    stats: ReplayStats


def diff_lines(
    lines: Iterable[bytes],
    a: Engine,
    b: Engine,
    until: float | None = None,
    on_reject: Callable[[int, str], None] | None = None,
    now: float | None = None,
    tail: float = DEFAULT_TAIL,
) -> DiffResult:
    """Run both engines over one read of ``lines``, as ``replay_lines`` runs one.

    A line is left out of both when it is bad for either: with ``now`` set, the smaller
    of the two policies' ``max_future_skew`` bounds future timestamps.
    """
    side_a, side_b = Side(a.policy.version), Side(b.policy.version)
    strict = min((a, b), key=lambda e: e.policy.max_future_skew)
    unused = io.BytesIO()
    stats = replay_lines(lines, strict, unused, unused, until=until, on_reject=on_reject,
                         now=now, pipeline=_Pair(a, b, side_a, side_b), tail=tail)
    return DiffResult(side_a, side_b, stats)
