"""Timers always move forward: after a key is advanced to `now`, nothing of it is due by `now`.

A key whose next due time stays at or before the time it was just advanced to would be
advanced again and again by the runtime (replay's heap, the worker's tick): this guards
that, over generated workloads and a long run-out of the clock.
"""

from __future__ import annotations

import io

from tactful.core.engine import Engine, Outbox
from tactful.core.policy import load_policy
from tactful.core.state import CustomerState, SessionState
from tactful.service.replay import replay_lines
from tactful.workload import dumps_line, generate


class CheckedEngine(Engine):
    def advance_session(self, st: SessionState, now: float, out: Outbox) -> SessionState | None:
        kept = super().advance_session(st, now, out)
        if kept is not None:
            due = self.next_due(kept)
            assert due is None or due > now, ("session", due, now)
        return kept

    def advance_customer(self, st: CustomerState, now: float, out: Outbox) -> CustomerState:
        kept = super().advance_customer(st, now, out)
        due = self.next_due(kept)
        assert due is None or due > now, ("customer", due, now)
        return kept


def test_no_key_stays_due_after_it_was_advanced() -> None:
    for seed in (1, 2, 3):
        lines = [dumps_line(e) for e in generate(150, 4000, seed=seed)]
        stats = replay_lines(lines, CheckedEngine(load_policy()), io.BytesIO(), io.BytesIO(),
                             until=None)
        assert stats.events == 4000
        assert stats.rejected == 0, stats.rejected_lines


def test_a_long_run_out_forgets_idle_sessions_and_carts() -> None:
    from datetime import datetime

    lines = [dumps_line(e) for e in generate(100, 3000, seed=9)]
    until = datetime.fromisoformat("2026-09-01T00:00:00+00:00").timestamp()
    stats = replay_lines(lines, CheckedEngine(load_policy()), io.BytesIO(), io.BytesIO(),
                         until=until)
    assert stats.events == 3000
    assert stats.rejected == 0, stats.rejected_lines


def test_an_unbound_session_with_an_old_cart_expires_once() -> None:
    from datetime import datetime

    from tactful.adapters.codec import decode_event
    from tactful.core.pipeline import Pipeline

    def ev(n: int, typ: str, ts: str, **extra: object) -> bytes:
        import orjson

        body = {"event_id": f"e{n}", "type": typ, "ts": ts, "session_id": "s-anon", **extra}
        return orjson.dumps(body)

    product = {"sku": "k1", "product_id": "p1", "category": ["home"], "price": 10.0,
               "currency": "USD", "qty": 1}
    pipeline = Pipeline(CheckedEngine(load_policy()))
    out = Outbox()
    pipeline.feed(decode_event(ev(1, "cart_add", "2026-05-01T10:00:00Z", **product)), out)
    pipeline.feed(decode_event(ev(2, "page_view", "2026-05-02T10:00:00Z")), out)
    pipeline.advance(datetime.fromisoformat("2026-07-01T00:00:00+00:00").timestamp(), out)
    assert "s-anon" not in pipeline.sessions
    kinds = [(d.kind, d.outcome, d.reason) for _, d in out.decisions]
    assert kinds == [("abandoned_cart", "suppressed", "unverified_identity")]
