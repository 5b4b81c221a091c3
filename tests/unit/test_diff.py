"""``tactful diff``'s comparison (SPEC §6): decision counts side by side, and the intents
and cancellations only one policy emits, compared without ``policy_version``.
Expected tables and lines are written by hand."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta

import msgspec
import orjson
import pytest
from tests.unit.test_core_engine import DEFAULT_TOML

from tactful.core.engine import Engine
from tactful.core.outputs import Cancellation, ConsentRef, ContactIntent, Decision, IntentItem
from tactful.core.policy import parse_policy
from tactful.service.diff import (
    Row,
    Side,
    content,
    diff_lines,
    one_sided,
    only_line,
    render_summary,
    render_table,
    table_rows,
)
from tactful.service.replay import Progress


def intent(customer: str = "cust-1", send_after: str = "2026-05-05T18:10:00Z",
           version: str = "a+000000000000", channel: str = "email") -> ContactIntent:
    return ContactIntent(
        intent_id=f"int-{customer}-{channel}", customer_id=customer, channel=channel,
        kind="abandoned_cart", items=[IntentItem("sku-1", 1, 20.0)],
        created_at="2026-05-05T18:10:00Z", send_after=send_after,
        send_before="2026-05-06T18:10:00Z", topic="cart_reminders",
        reasons=["abandoned_cart", "verified_identity", "consent"],
        consent=ConsentRef(channel, "2026-05-01T12:00:00Z", "account_signup"),
        policy_version=version,
    )


def cancellation(customer: str = "cust-1") -> Cancellation:
    return Cancellation(f"int-{customer}-sms", True, "converted", customer, "sms",
                        "2026-05-05T19:00:00Z")


def decision(kind: str, channel: str | None, outcome: str, reason: str | None) -> Decision:
    return Decision(decision_id="dec-x", customer_id="cust-1", kind=kind, channel=channel,
                    outcome=outcome, reason=reason,  # type: ignore[arg-type]
                    at="2026-05-05T18:10:00Z", trigger_event_ids=["e1"])


def test_intents_that_differ_only_in_policy_version_mean_the_same() -> None:
    a, b = intent(version="shop-a+111111111111"), intent(version="shop-b+222222222222")
    assert content(a) == content(b)
    assert content(a) != content(intent(send_after="2026-05-05T19:00:00Z"))
    assert content(a) != content(intent(customer="cust-2"))
    assert content(cancellation()) == content(cancellation())
    assert content(cancellation()) != content(cancellation("cust-2"))


def test_one_sided_records_are_a_multiset_difference_in_emission_order() -> None:
    x_a, x_b = intent("cust-x", version="A"), intent("cust-x", version="B")
    y_a, z_b = intent("cust-y", version="A"), intent("cust-z", version="B")
    moved_a = intent("cust-m", version="A")
    moved_b = intent("cust-m", send_after="2026-05-06T12:00:00Z", version="B")
    alone = one_sided([x_a, moved_a, y_a, x_a, cancellation()],
                      [z_b, x_b, moved_b, cancellation()])
    # x: twice under A, once under B, so once only A; the moved intent is on both lists.
    assert alone.a == [moved_a, y_a, x_a]
    assert alone.b == [z_b, moved_b]
    assert alone.a[0].intent_id == alone.b[1].intent_id
    nothing = one_sided([x_a], [x_b])
    assert (nothing.a, nothing.b) == ([], [])


def test_rows_are_sorted_and_keep_only_what_either_side_counts() -> None:
    a = Side("A")
    a.count([decision("abandoned_cart", "email", "emitted", None),
             decision("abandoned_cart", "email", "emitted", None),
             decision("abandoned_cart", "sms", "cancelled", "converted"),
             decision("abandoned_cart", "sms", "deferred", None),
             decision("price_drop", "email", "emitted", None)])
    b = Side("B")
    b.count([decision("price_drop", "email", "emitted", None),
             decision("abandoned_cart", None, "suppressed", "no_consent"),
             decision("abandoned_cart", "sms", "emitted", None),
             decision("abandoned_cart", "email", "suppressed", "frequency_cap"),
             decision("abandoned_cart", "email", "suppressed", "cooldown")])
    a.decisions[("low_stock", "push", "emitted", None)] = 0  # a zero row is not shown
    rows = table_rows(a.decisions, b.decisions)
    assert rows == [
        Row("abandoned_cart", None, "suppressed", "no_consent", 0, 1),
        Row("abandoned_cart", "email", "emitted", None, 2, 0),
        Row("abandoned_cart", "email", "suppressed", "cooldown", 0, 1),
        Row("abandoned_cart", "email", "suppressed", "frequency_cap", 0, 1),
        Row("abandoned_cart", "sms", "emitted", None, 0, 1),
        Row("abandoned_cart", "sms", "deferred", None, 1, 0),
        Row("abandoned_cart", "sms", "cancelled", "converted", 1, 0),
        Row("price_drop", "email", "emitted", None, 1, 1),
    ]
    assert [r.change for r in rows] == [1, -2, 1, 1, 1, -1, -1, 0]


def test_the_table_names_both_policies_and_totals_each_column() -> None:
    rows = [
        Row("abandoned_cart", None, "suppressed", "no_consent", 0, 12),
        Row("abandoned_cart", "email", "emitted", None, 12, 0),
        Row("price_drop", "push", "emitted", None, 3, 3),
    ]
    text = render_table(rows, ("shop-a+111111111111", "a.toml"),
                        ("shop-b+222222222222", "b.toml"))
    assert text == (
        "A  shop-a+111111111111  (a.toml)\n"
        "B  shop-b+222222222222  (b.toml)\n"
        "\n"
        "kind            channel  outcome     reason       A   B  B-A\n"
        "abandoned_cart  -        suppressed  no_consent   0  12  +12\n"
        "abandoned_cart  email    emitted     -           12   0  -12\n"
        "price_drop      push     emitted     -            3   3    0\n"
        "total                                            15  15    0\n"
    )


def test_an_empty_run_still_prints_the_header_and_zero_totals() -> None:
    text = render_table([], ("a", "a.toml"), ("b", "b.toml"))
    # The totals sit under A, B and B-A: "A" is at column 5 + 2 + 7 + 2 + 7 + 2 + 6 + 2.
    assert text.splitlines()[3:] == ["kind   channel  outcome  reason  A  B  B-A",
                                     "total" + " " * 28 + "0  0    0"]


def test_the_summary_counts_intents_and_cancellations_apart() -> None:
    a, b = Side("A"), Side("B")
    a.records += [intent("cust-1"), intent("cust-2"), cancellation("cust-2")]
    b.records += [intent("cust-1"), intent("cust-3")]
    alone = one_sided(a.records, b.records)
    assert render_summary(a, b, alone) == (
        "intents: A 2, B 2, only A 1, only B 1\n"
        "cancellations: A 1, B 0, only A 1, only B 0\n"
    )


def test_an_only_line_is_the_record_as_replay_writes_it_plus_its_side() -> None:
    record = intent(version="shop-a+111111111111")
    line = only_line(record, "A")
    assert line.endswith(b"}\n") and line.count(b"\n") == 1
    assert orjson.loads(line) == {**msgspec.to_builtins(record), "only": "A"}
    assert orjson.loads(only_line(cancellation(), "B")) == {
        "intent_id": "int-cust-1-sms", "cancelled": True, "reason": "converted",
        "customer_id": "cust-1", "channel": "sms", "at": "2026-05-05T19:00:00Z",
        "only": "B"}


def _policy(version: str, skew: str) -> Engine:
    text = re.sub(r'(?m)^version = ".*"$', f'version = "{version}"', DEFAULT_TOML)
    text, found = re.subn(r'(?m)^max_future_skew = ".*"$', f'max_future_skew = "{skew}"', text)
    assert found == 1
    return Engine(parse_policy(text.encode()))


def test_a_line_bad_for_either_policy_is_left_out_of_both() -> None:
    now = datetime(2026, 5, 5, 12, 0, tzinfo=UTC)
    ahead = (now + timedelta(minutes=20)).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [
        b'{"event_id":"e1","type":"consent_granted","ts":"2026-05-05T11:00:00Z",'
        b'"customer_id":"cust-1","channel":"email","source":"account_signup"}\n',
        b"{not json\n",
        b'{"event_id":"e2","type":"consent_revoked","ts":"' + ahead.encode()
        + b'","customer_id":"cust-1","channel":"email","source":"settings"}\n',
    ]
    rejected: list[tuple[int, str]] = []
    result = diff_lines(lines, _policy("a", "1h"), _policy("b", "15m"),
                        on_reject=lambda n, why: rejected.append((n, why)),
                        now=now.timestamp())
    # 20 minutes ahead is within A's 1 h but not B's 15 m: out of both.
    assert [n for n, _ in rejected] == [2, 3]
    assert rejected[1][1].startswith("future_timestamp")
    assert (result.stats.events, result.stats.rejected) == (1, 2)
    assert result.a.policy_version.startswith("a+") and result.b.policy_version.startswith("b+")
    both_lenient = diff_lines(lines, _policy("a", "1h"), _policy("b", "1h"),
                              now=now.timestamp())
    assert (both_lenient.stats.events, both_lenient.stats.rejected) == (2, 1)


def test_the_progress_bar_names_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    stream = io.BytesIO(b"a\n" * 4)
    assert list(Progress(8, enabled=True, label="diff").lines(stream)) == [b"a\n"] * 4
    err = capsys.readouterr().err
    assert err.startswith("\rdiff [") and err.endswith("] 100%\n")
    assert "replay" not in err
