"""``tactful replay``: the engine over a JSON-lines file, no Kafka, same intents as the worker."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

from tactful.adapters.codec import Rejected, dead_letter, decode_event, decode_message, encode
from tactful.core.engine import Engine, Outbox
from tactful.core.errors import BadEvent
from tactful.core.events import Event
from tactful.core.pipeline import Pipeline

DEFAULT_TAIL = 7 * 86400.0  # the clock runs on to the last event + 7 days


class Feeder(Protocol):
    """What ``replay_lines`` drives: a ``Pipeline``, or something that feeds and advances
    like one (``tactful diff`` feeds two pipelines from one read)."""

    def feed(self, event: Event, out: Outbox, t: float | None = None) -> None: ...

    def advance(self, now: float, out: Outbox) -> None: ...


@dataclass(slots=True)
class ReplayStats:
    events: int = 0
    rejected: int = 0
    failed: int = 0  # inputs the engine failed on (processing_error), among the rejected
    intents: int = 0
    decisions: int = 0
    rejected_lines: list[tuple[int, str]] = field(default_factory=list)


def replay_lines(
    lines: Iterable[bytes],
    engine: Engine,
    intents_out: BinaryIO,
    decisions_out: BinaryIO,
    until: float | None = None,
    deadletter_out: BinaryIO | None = None,
    source: str = "replay",
    on_reject: Callable[[int, str], None] | None = None,
    now: float | None = None,
    pipeline: Feeder | None = None,
    tail: float = DEFAULT_TAIL,
) -> ReplayStats:
    """Feed every line to one pipeline, writing outputs in emission order.

    ``now`` is the processing time that bounds future timestamps (``tactful replay``
    passes the wall clock, or ``--now``; None sets no bound): an event stamped more than
    the policy's ``max_future_skew`` after it is rejected as ``future_timestamp``, as
    the worker does against its wall clock. Without ``until`` the clock runs on ``tail``
    seconds past the last event. ``pipeline`` keeps the state, for a caller that reads it
    after (explain).
    """
    pipeline = pipeline or Pipeline(engine)
    out = Outbox()
    stats = ReplayStats()
    last = float("-inf")
    not_after = float("inf") if now is None else now + engine.policy.max_future_skew

    def reject(number: int, item: Rejected) -> None:
        stats.rejected += 1
        stats.rejected_lines.append((number, item.reason))
        if on_reject is not None:
            on_reject(number, item.reason)
        if deadletter_out is not None:
            deadletter_out.write(dead_letter(item, source, None, number) + b"\n")

    def feed(number: int, raw: bytes, event: Event, t: float | None) -> None:
        try:
            pipeline.feed(event, out, t)
        except Exception as exc:  # the engine is pure: its error is this input's
            # As in the worker, the input is dead-lettered and the run goes on; replay keeps
            # its state in place, so the keys it touched may hold part of its effect.
            out.clear()
            reject(number, Rejected(f"processing_error: {type(exc).__name__}", raw))
            stats.failed += 1

    for number, line in enumerate(lines, start=1):
        if line[:1] == b"{":  # the common case: one event per line
            try:
                event = decode_event(line)
            except BadEvent:
                pass  # reported below, by the general path
            else:
                t = event.ts.timestamp()
                if t <= not_after:
                    stats.events += 1
                    last = max(last, t)
                    feed(number, line, event, t)
                    if out.intents or out.decisions:
                        _flush(out, intents_out, decisions_out, stats)
                    continue
        if not line.strip():
            continue
        for item in decode_message(line.rstrip(b"\r\n"), not_after):
            if isinstance(item, Rejected):
                reject(number, item)
                continue
            stats.events += 1
            last = max(last, item.ts.timestamp())
            feed(number, line, item, None)
        if out.intents or out.decisions:
            _flush(out, intents_out, decisions_out, stats)
    end = until if until is not None else last + tail
    if end != float("-inf"):
        pipeline.advance(end, out)
        _flush(out, intents_out, decisions_out, stats)
    return stats


def _flush(out: Outbox, intents_out: BinaryIO, decisions_out: BinaryIO, stats: ReplayStats) -> None:
    if out.intents:
        intents_out.write(b"".join(encode(rec) + b"\n" for _, rec in out.intents))
        stats.intents += len(out.intents)
        out.intents.clear()
    if out.decisions:
        decisions_out.write(b"".join(encode(rec) + b"\n" for _, rec in out.decisions))
        stats.decisions += len(out.decisions)
        out.decisions.clear()


class Progress:
    """A one-line progress bar on stderr, only for a terminal and a large input."""

    def __init__(self, total: int, enabled: bool, label: str = "replay") -> None:
        self.total = max(total, 1)
        self.enabled = enabled
        self.label = label
        self.done = 0
        self._shown = -1

    def lines(self, stream: BinaryIO) -> Iterable[bytes]:
        if not self.enabled:
            return stream
        return self._counted(stream)

    def _counted(self, stream: BinaryIO) -> Iterable[bytes]:
        for line in stream:
            self.done += len(line)
            if self.enabled:
                pct = self.done * 100 // self.total
                if pct != self._shown:
                    self._shown = pct
                    bar = "#" * (pct // 4)
                    sys.stderr.write(f"\r{self.label} [{bar:<25}] {pct:3d}%")
                    sys.stderr.flush()
            yield line
        if self.enabled:
            sys.stderr.write("\n")


def progress_for(path: str, label: str = "replay") -> Progress:
    size = os.path.getsize(path) if os.path.isfile(path) else 0
    return Progress(size, enabled=sys.stderr.isatty() and size > 8 * 1024 * 1024, label=label)
