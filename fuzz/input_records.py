"""Coverage-guided fuzzing (atheris) of what turns an input record into events or
dead letters: its headers, its value (one event or an array of them), and its key.

Here, at the repository's root beside ``bench/``, rather than under ``tests/``: a target
is run for a time, not to a verdict, by ``make fuzz`` (never by pytest or ``make test``),
and atheris is an optional extra (``pip install -e '.[fuzz]'``). Its crashes become unit
tests in tests/unit (test_codec_fuzz_findings.py), where pytest does run them.

One target per input topic: ``python -m fuzz.input_records TOPIC [libFuzzer flags]
[CORPUS_DIR...]``. An input is a record in the layout of the seed files in
``fuzz/corpus/TOPIC/``: the key on the first line (``-`` for none), its headers on the
second (``name=value`` pairs separated by tabs), its value after that; an input without
two newlines is a value alone, with no key and no headers.

The property, from SPEC §1 and the codec's promise (adapters/codec.py): nothing in a
record raises anything but ``BadEvent`` from its headers, and decoding its value yields
only events and ``Rejected``. A ``Rejected`` has a reason, its original bytes (the whole
value, or one array element of it) and a dead letter that encodes. An event is of a type
the topic carries (tests/input_contract.py, written from the spec), has its key field as
printable text, lies inside the timestamp window and not after the processing clock's
bound, and re-encodes to bytes that decode to itself (what a forwarded event and the
pending table rely on). Any other exception is a finding.
"""

from __future__ import annotations

import sys
from typing import Any

import atheris
import msgspec

with atheris.instrument_imports(include=["tactful"]):
    from tactful.adapters.codec import (
        Rejected,
        dead_letter,
        decode_event,
        decode_headers,
        decode_message,
    )
    from tactful.core.errors import BadEvent
    from tactful.core.events import Event
    from tactful.core.limits import LIMITS

from tests.input_contract import TOPICS

# The worker's partitioner (murmur2) is applied to the key and to the event's own id; it
# is imported uninstrumented (it would bring Faust's modules into the coverage map).
from tactful.service.metrics import dead_letter_code
from tactful.service.worker import partition_of

PARTITIONS = 12
# The processing clock's bound on event time (the worker's is the wall clock plus the
# policy's max_future_skew): fixed, so that a finding reproduces.
NOT_AFTER = 1_800_000_000.0  # 2027-01-15


def split_record(data: bytes) -> tuple[bytes | None, list[tuple[str, bytes]], bytes]:
    """An input's key, headers (aiokafka's shape: str name, bytes value) and value."""
    parts = data.split(b"\n", 2)
    if len(parts) < 3:
        return None, [], data
    key_line, header_line, value = parts
    key = None if key_line == b"-" else key_line
    headers = []
    for pair in header_line.split(b"\t") if header_line else ():
        name, _, raw = pair.partition(b"=")
        headers.append((name.decode("utf-8", "replace"), raw))
    return key, headers, value


def check_record(topic: str, data: bytes) -> None:
    key, headers, value = split_record(data)
    key_field, types = TOPICS[topic]
    if key is not None:
        assert 0 <= partition_of(key, PARTITIONS) < PARTITIONS
    try:
        marker = decode_headers(headers)
    except BadEvent as exc:
        assert isinstance(exc.reason, str) and exc.reason, repr(exc.reason)
        _check_rejected(Rejected(exc.reason, value), value, topic)
        return
    if marker.clock is not None:
        assert LIMITS.earliest_ts <= marker.clock < LIMITS.latest_ts, marker.clock
    count = 0
    for item in decode_message(value, NOT_AFTER, topic):
        count += 1
        if isinstance(item, Rejected):
            _check_rejected(item, value, topic)
            continue
        assert isinstance(item, Event), type(item)
        _check_event(item, topic, key_field, types)
    assert 1 <= count <= LIMITS.max_batch, count


def _check_rejected(item: Rejected, value: bytes, topic: str) -> None:
    assert isinstance(item.reason, str) and item.reason.strip(), repr(item.reason)
    assert isinstance(item.original, bytes), type(item.original)
    if item.index is None:
        assert item.original == value
    else:
        assert 0 <= item.index < LIMITS.max_batch and item.original in value, item.index
    letter = msgspec.json.decode(dead_letter(item, topic, 0, 0))
    assert letter["reason"] == item.reason, letter
    assert dead_letter_code(item.reason), item.reason


def _check_event(event: Event, topic: str, key_field: str, types: tuple[str, ...]) -> None:
    kind: Any = event.__struct_config__.tag
    assert kind in types, f"a {kind} event accepted on topic {topic}"
    own = getattr(event, key_field)  # what the worker places the event by
    assert isinstance(own, str) and own.isprintable() and not own.isspace(), repr(own)
    assert 0 <= partition_of(own.encode(), PARTITIONS) < PARTITIONS
    t = event.ts.timestamp()
    assert LIMITS.earliest_ts <= t < LIMITS.latest_ts and t <= NOT_AFTER, event.ts
    encoded = msgspec.json.encode(event)
    again = decode_event(encoded)  # a BadEvent here is a finding too: it must not raise
    assert again == event, (encoded, again)
    assert msgspec.json.encode(again) == encoded, encoded


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TOPICS:
        sys.exit(f"usage: python -m fuzz.input_records {{{','.join(TOPICS)}}} "
                 "[libFuzzer flags] [CORPUS_DIR...]")
    topic = sys.argv.pop(1)

    def one_input(data: bytes) -> None:
        check_record(topic, data)

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
