"""Internal messages carry where they were sent from; a receiver drops a repeat."""

from __future__ import annotations

import msgspec

from tactful.adapters.wire import Envelope, Tick, Watermark, first_delivery, pack, unpack
from tactful.core.messages import SkuSignal


def _signal(offset: int, index: int, origin: str = "tactful.inventory:1") -> Envelope:
    body = SkuSignal("sku-37", "back_in_stock", None, f"ev-{offset}", 1.0)
    return unpack(pack(1.0, "", body, origin, offset, index))


def test_an_envelope_keeps_where_it_was_sent_from() -> None:
    env = _signal(41, 2)
    assert (env.origin, env.offset, env.index) == ("tactful.inventory:1", 41, 2)
    assert env.body == SkuSignal("sku-37", "back_in_stock", None, "ev-41", 1.0)


def test_an_envelope_written_without_a_position_still_decodes() -> None:
    # The three-field form earlier workers wrote.
    old = msgspec.msgpack.encode([5.0, "3", Watermark("sku:0", 5.0)])
    env = unpack(old)
    assert env.origin == "" and env.body == Watermark("sku:0", 5.0)


def test_a_repeat_sent_again_after_a_crash_is_dropped() -> None:
    received: dict[str, tuple[int, int]] = {}
    firsts = [first_delivery(received, _signal(o, i)) for o, i in [(10, 0), (10, 1), (12, 0)]]
    assert firsts == [True, True, True]
    # The sender's successor processes inputs 10..12 again: the same messages again.
    assert [first_delivery(received, _signal(o, i)) for o, i in [(10, 0), (10, 1), (12, 0)]] \
        == [False, False, False]
    # ... then goes on past them: new messages.
    assert first_delivery(received, _signal(12, 1)) is True
    assert first_delivery(received, _signal(13, 0)) is True
    assert received == {"tactful.inventory:1": (13, 0)}


def test_positions_are_kept_per_origin() -> None:
    received: dict[str, tuple[int, int]] = {}
    assert first_delivery(received, _signal(50, 0, "tactful.inventory:1"))
    assert first_delivery(received, _signal(3, 0, "tactful.inventory:2"))  # lower, other origin
    assert not first_delivery(received, _signal(3, 0, "tactful.inventory:2"))


def test_a_message_sent_outside_an_input_is_never_dropped() -> None:
    received: dict[str, tuple[int, int]] = {}
    tick = unpack(pack(9.0, "", Tick(9.0)))
    assert first_delivery(received, tick) and first_delivery(received, tick)
    assert received == {}


def test_a_bundle_carries_its_envelopes_in_order() -> None:
    from tactful.adapters.wire import bundle, envelope, unpack_all

    for n in (0, 1, 15, 16, 300, 70_000):  # each msgpack array header size
        parts = [envelope(float(i), str(i), Tick(float(i)), "tactful.consent:0", 9, i)
                 for i in range(n)]
        got = unpack_all(bundle(parts))
        assert [(e.ts, e.seq, e.index) for e in got] == [(float(i), str(i), i) for i in range(n)]


def test_a_single_envelope_as_earlier_workers_wrote_it_is_a_bundle_of_one() -> None:
    from tactful.adapters.wire import unpack_all

    got = unpack_all(pack(2.0, "7", Watermark("sku:1", 2.0), "tactful.inventory:1", 4, 0))
    assert [(e.body, e.offset) for e in got] == [(Watermark("sku:1", 2.0), 4)]


def test_bytes_no_worker_wrote_are_refused() -> None:
    import pytest

    from tactful.adapters.wire import unpack_all

    for junk in (b"", b"\xc1", b'{"a": 1}', msgspec.msgpack.encode([[1, 2]])):
        with pytest.raises(msgspec.DecodeError):
            unpack_all(junk)
