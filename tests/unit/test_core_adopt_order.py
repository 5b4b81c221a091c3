"""A repeat of an anonymous view, delivered again after a login bound its session: the
session does not pass it on (its adoption carried the view), and a view the customer
has already counts once when an adoption brings it again. The worker orders a
customer's inputs by event time, so a repeat passed on (it has the original's time)
would reach the customer before the adoption, which replay applies first."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from tactful.core.engine import Engine, Outbox
from tactful.core.events import Login, ProductView
from tactful.core.messages import AdoptSession, SessionFact
from tactful.core.policy import load_policy
from tactful.core.state import CustomerState, SessionState

ENGINE = Engine(load_policy())
VIEW_AT = datetime(2026, 5, 6, 2, 11, 59, tzinfo=UTC)
LOGIN_AT = datetime(2026, 5, 6, 2, 14, 52, tzinfo=UTC)


def _view() -> ProductView:
    return msgspec.convert({
        "event_id": "v-1", "type": "product_view", "ts": VIEW_AT.isoformat(),
        "session_id": "sess-a", "sku": "sku-1", "product_id": "prod-1",
        "category": ["home"], "price": 20.0, "currency": "USD", "qty": 1,
    }, ProductView, strict=False)


def _login() -> Login:
    return msgspec.convert({
        "event_id": "l-1", "type": "login", "ts": LOGIN_AT.isoformat(),
        "session_id": "sess-a", "customer_id": "cust-1", "identity": {"method": "login"},
    }, Login, strict=False)


def _bound(out: Outbox) -> SessionState:
    """The session after the anonymous view and the login that binds it."""
    st = ENGINE.on_session(None, _view(), VIEW_AT.timestamp(), out)
    st = ENGINE.on_session(st, _login(), LOGIN_AT.timestamp(), out)
    assert st is not None
    return st


def _views_of(messages: list[tuple[float, object]]) -> list[str]:
    st: CustomerState | None = None
    out = Outbox()
    for t, msg in messages:
        st = ENGINE.on_customer(st, msg, t, out)
    assert st is not None
    return st.views["prod-1"].event_ids


def test_a_bound_session_does_not_pass_on_a_repeat_its_adoption_carried() -> None:
    out = Outbox()
    st = _bound(out)
    assert [type(m) for _, _, m in out.internal] == [AdoptSession, SessionFact]
    out.clear()
    ENGINE.on_session(st, _view(), VIEW_AT.timestamp(), out)
    assert out.internal == []


def test_a_bound_session_passes_on_a_repeat_it_forwarded() -> None:
    # (the customer drops it if the first forward did arrive)
    out = Outbox()
    st = _bound(out)
    later = msgspec.structs.replace(_view(), event_id="v-2", customer_id="cust-1")
    st = ENGINE.on_session(st, later, LOGIN_AT.timestamp() + 60, out)
    assert st is not None
    out.clear()
    ENGINE.on_session(st, later, LOGIN_AT.timestamp() + 60, out)
    assert [type(m) for _, _, m in out.internal] == [SessionFact]


def test_a_view_the_customer_has_counts_once_when_the_adoption_brings_it_again() -> None:
    out = Outbox()
    _bound(out)
    at_login = [(LOGIN_AT.timestamp(), m) for _, _, m in out.internal]
    repeat = SessionFact("cust-1", "sess-a", _view())
    assert _views_of([*at_login, (VIEW_AT.timestamp(), repeat)]) == ["v-1"]
    assert _views_of([(VIEW_AT.timestamp(), repeat), *at_login]) == ["v-1"]
