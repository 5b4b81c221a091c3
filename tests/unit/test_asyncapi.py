"""schemas/asyncapi.yaml describes every topic the worker uses, and every reference in it
leads somewhere: the topic list, the event types and the headers come from the code, not
from the document."""

from __future__ import annotations

import functools
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson
import pytest
import yaml
from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from tactful import __version__
from tactful.adapters.codec import CLOCK_HEADER, SEQ_HEADER
from tactful.core.engine import Engine
from tactful.core.events import EVENT_TYPES, TOPIC_KEY_FIELD, TOPIC_TYPES, TYPE_TOPIC
from tactful.core.policy import load_policy
from tactful.service.replay import replay_lines
from tactful.service.settings import Settings
from tactful.service.worker import INPUT_TOPICS, INTERNAL_TOPICS, OUTPUT_TOPICS
from tactful.workload import dumps_line, generate

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
DOCUMENT = SCHEMAS / "asyncapi.yaml"
EXAMPLES = ROOT / "tests" / "fixtures" / "spec_examples.jsonl"
SCENARIOS = ROOT / "tests" / "scenarios"
# The records each output topic carries: the generated schema files of core/outputs.py.
OUTPUT_FILES = {
    "intents": {"outputs/intent.json", "outputs/cancellation.json"},
    "decisions": {"outputs/decision.json"},
    "deadletter": {"outputs/deadletter.json"},
}
# JSON Schema draft-07's keywords: what an AsyncAPI Schema Object reads. `$defs` is
# 2020-12's, but the files reach it only by JSON pointer, which any draft follows.
DRAFT7_KEYWORDS = frozenset({
    "$id", "$schema", "$ref", "$comment", "$defs", "definitions", "title", "description",
    "default", "readOnly", "writeOnly", "examples", "multipleOf", "maximum",
    "exclusiveMaximum", "minimum", "exclusiveMinimum", "maxLength", "minLength", "pattern",
    "additionalItems", "items", "maxItems", "minItems", "uniqueItems", "contains",
    "maxProperties", "minProperties", "required", "additionalProperties", "properties",
    "patternProperties", "dependencies", "propertyNames", "const", "enum", "type", "format",
    "contentMediaType", "contentEncoding", "if", "then", "else", "allOf", "anyOf", "oneOf",
    "not",
})


@functools.cache
def _load(path: Path) -> Any:
    if path.suffix in (".yaml", ".yml"):
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    return orjson.loads(path.read_bytes())


DOC: dict[str, Any] = _load(DOCUMENT)


def _pointer(doc: Any, fragment: str, where: str) -> Any:
    """The node a JSON pointer fragment (``/a/b``, RFC 6901) names in ``doc``."""
    node = doc
    if not fragment:
        return node
    assert fragment.startswith("/"), f"{where}: fragment {fragment!r} is not a JSON pointer"
    for raw in fragment[1:].split("/"):
        part = unquote(raw).replace("~1", "/").replace("~0", "~")
        if isinstance(node, list):
            assert part.isdigit() and int(part) < len(node), f"{where}: no item {part!r}"
            node = node[int(part)]
        else:
            assert isinstance(node, dict) and part in node, f"{where}: no member {part!r}"
            node = node[part]
    return node


def _resolve(base: Path, ref: str) -> tuple[Path, Any]:
    """The file and node a ``$ref`` found in ``base`` leads to; fails the test if none."""
    parts = urlsplit(ref)
    where = f"{base.relative_to(ROOT)}: $ref {ref!r}"
    assert not parts.scheme and not parts.netloc, f"{where} is not relative"
    target = base
    if parts.path:
        assert not parts.path.startswith("/"), f"{where} is absolute"
        target = (base.parent / unquote(parts.path)).resolve()
        assert target.is_relative_to(SCHEMAS), f"{where} leaves schemas/"
        assert target.is_file(), f"{where}: no such file"
    return target, _pointer(_load(target), parts.fragment, where)


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            yield ref
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _reachable(base: Path, node: Any) -> Iterator[tuple[Path, Any]]:
    """Every node reached from ``node`` by following ``$ref`` across files, once each."""
    seen: set[tuple[Path, str]] = set()
    todo = [(base, node)]
    while todo:
        path, current = todo.pop()
        yield path, current
        for ref in _refs(current):
            target, found = _resolve(path, ref)
            key = (target, urlsplit(ref).fragment)
            if key not in seen:
                seen.add(key)
                todo.append((target, found))


def _channel(topic: str) -> tuple[str, dict[str, Any]]:
    address = Settings().topic(topic)  # the default prefix
    found = [(cid, ch) for cid, ch in DOC["channels"].items() if ch["address"] == address]
    assert len(found) == 1, f"{address}: {len(found)} channels"
    return found[0]


def _messages(topic: str) -> list[dict[str, Any]]:
    _, channel = _channel(topic)
    messages = []
    for entry in channel["messages"].values():
        messages.append(_resolve(DOCUMENT, entry["$ref"])[1] if "$ref" in entry else entry)
    return messages


def _event_types(topic: str) -> set[str]:
    """The input event types (``type`` values) a channel's messages lead to."""
    types: set[str] = set()
    for message in _messages(topic):
        for _, node in _reachable(DOCUMENT, message):
            if isinstance(node, dict) and isinstance(node.get("properties"), dict):
                tag = node["properties"].get("type")
                if isinstance(tag, dict):
                    types.update(tag.get("enum", ()))
                    if "const" in tag:
                        types.add(tag["const"])
    return types


def _files(topic: str) -> set[str]:
    files = set()
    for message in _messages(topic):
        for path, _ in _reachable(DOCUMENT, message):
            if path != DOCUMENT:
                files.add(path.relative_to(SCHEMAS).as_posix())
    return files


def _tags(node: dict[str, Any]) -> set[str]:
    return {t["name"] for t in node.get("tags", ())}


# ---------------------------------------------------------------- the document


def test_the_document_is_asyncapi_3_and_names_this_version() -> None:
    assert isinstance(DOC, dict)
    assert str(DOC["asyncapi"]).startswith("3.")
    assert DOC["info"]["version"] == __version__
    assert DOC["defaultContentType"] == "application/json"
    assert DOC["servers"]
    assert all(s["protocol"].startswith("kafka") for s in DOC["servers"].values())


def test_every_reference_resolves_across_the_document_and_the_schema_files() -> None:
    refs = list(_refs(DOC))
    assert any(r.startswith("#/") for r in refs)
    assert any(r.split("#")[0].endswith(".json") and "#/" in r for r in refs)  # a fragment
    files = set()
    for path, _ in _reachable(DOCUMENT, DOC):  # every $ref, in every file it reaches
        files.add(path)
    referenced = {p.relative_to(SCHEMAS).as_posix() for p in files if p != DOCUMENT}
    # Every output schema and every event schema but the union (any.json) is used.
    assert referenced >= {f"events/{t}.json" for t in EVENT_TYPES}
    assert referenced >= set().union(*OUTPUT_FILES.values())


def test_the_resolver_refuses_what_does_not_exist() -> None:
    with pytest.raises(AssertionError):
        _resolve(DOCUMENT, "#/components/schemas/NoSuchSchema")
    with pytest.raises(AssertionError):
        _resolve(DOCUMENT, "events/no_such_event.json")
    with pytest.raises(AssertionError):
        _resolve(DOCUMENT, "events/login.json#/$defs/NoSuchDef")
    with pytest.raises(AssertionError):
        _resolve(DOCUMENT, "https://tactful.dev/schemas/events/login.json")


def test_payloads_are_references_to_the_schema_files_never_copies() -> None:
    for topic in INPUT_TOPICS + OUTPUT_TOPICS:
        for message in _messages(topic):
            if CLOCK_HEADER in _headers(message)["required"]:
                continue  # a clock marker: an empty value, no event
            assert any(p != DOCUMENT for p, _ in _reachable(DOCUMENT, message["payload"])), topic

    def inline_fields(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            if isinstance(node.get("properties"), dict):
                yield from node["properties"]
            for value in node.values():
                yield from inline_fields(value)
        elif isinstance(node, list):
            for value in node:
                yield from inline_fields(value)

    # What the document spells out itself is headers only: no field of an event or output.
    assert set(inline_fields(DOC)) == {SEQ_HEADER, CLOCK_HEADER}


def test_the_referenced_schema_files_use_only_draft_07_keywords() -> None:
    def keywords(schema: Any) -> Iterator[str]:
        if not isinstance(schema, dict):
            return
        yield from schema
        for name in ("$defs", "definitions", "properties", "patternProperties"):
            for sub in schema.get(name, {}).values():
                yield from keywords(sub)
        for name in ("allOf", "anyOf", "oneOf"):
            for sub in schema.get(name, ()):
                yield from keywords(sub)
        for name in ("items", "additionalItems", "additionalProperties", "contains",
                     "propertyNames", "if", "then", "else", "not"):
            sub = schema.get(name)
            for each in sub if isinstance(sub, list) else [sub]:
                yield from keywords(each)

    files = {p for p, _ in _reachable(DOCUMENT, DOC) if p != DOCUMENT}
    assert files
    for path in files:
        unknown = set(keywords(_load(path))) - DRAFT7_KEYWORDS
        assert not unknown, f"{path.name}: {sorted(unknown)}"


# ----------------------------------------------------- topics, from the worker


def test_every_topic_the_worker_reads_or_writes_is_a_channel_at_its_default_address() -> None:
    for topic in INPUT_TOPICS:
        assert "input" in _tags(_channel(topic)[1])
    for topic in OUTPUT_TOPICS:
        assert "output" in _tags(_channel(topic)[1])
    for topic in INTERNAL_TOPICS:  # documented, and marked private
        assert "internal" in _tags(_channel(topic)[1])
    addresses = {ch["address"] for ch in DOC["channels"].values()}
    every = {Settings().topic(t) for t in INPUT_TOPICS + INTERNAL_TOPICS + OUTPUT_TOPICS}
    assert addresses == every


def test_operations_receive_the_inputs_and_send_the_outputs_from_their_own_channel() -> None:
    actions: dict[str, set[str]] = {}
    for name, op in DOC["operations"].items():
        channel_ref = op["channel"]["$ref"]
        _, channel = _resolve(DOCUMENT, channel_ref)
        actions.setdefault(channel["address"], set()).add(op["action"])
        assert op["messages"], name
        for message in op["messages"]:
            # AsyncAPI 3: an operation's messages are some of its channel's messages.
            assert message["$ref"].startswith(f"{channel_ref}/messages/"), name
            _resolve(DOCUMENT, message["$ref"])
    for topic in INPUT_TOPICS:
        assert actions[Settings().topic(topic)] == {"receive"}, topic
    for topic in OUTPUT_TOPICS:
        assert actions[Settings().topic(topic)] == {"send"}, topic
    for topic in INTERNAL_TOPICS:
        assert actions[Settings().topic(topic)] == {"send", "receive"}, topic


def test_every_event_type_is_reached_from_the_messages_of_its_input_topic_only() -> None:
    for topic in INPUT_TOPICS:
        wanted = {cls.__struct_config__.tag for cls in TOPIC_TYPES[topic]}
        assert _event_types(topic) == wanted, topic
    assert set().union(*(_event_types(t) for t in INPUT_TOPICS)) == set(EVENT_TYPES)


def test_each_output_topic_leads_to_the_schemas_of_what_it_carries() -> None:
    for topic in OUTPUT_TOPICS:
        assert _files(topic) == OUTPUT_FILES[topic], topic


def test_input_messages_are_keyed_by_the_field_spec_names_and_placed_by_murmur2() -> None:
    for topic in INPUT_TOPICS:
        keyed = [m for m in _messages(topic) if "tactful-clock" not in _headers(m)["required"]]
        assert len(keyed) == 1, topic
        kafka = keyed[0]["bindings"]["kafka"]
        assert kafka["x-partitioner"] == "murmur2"
        (ref,) = _refs(kafka["key"])
        assert ref.endswith(f"/properties/{TOPIC_KEY_FIELD[topic]}"), topic
        _, key_schema = _resolve(DOCUMENT, ref)
        assert key_schema["type"] == "string"
    for topic in OUTPUT_TOPICS:
        for message in _messages(topic):
            assert message["bindings"]["kafka"]["x-partitioner"] == "murmur2", topic


def _headers(message: dict[str, Any]) -> dict[str, Any]:
    headers = message.get("headers", {"properties": {}})
    if "$ref" in headers:
        _, headers = _resolve(DOCUMENT, headers["$ref"])
    return {"properties": headers.get("properties", {}),
            "required": set(headers.get("required", ()))}


def test_input_channels_document_the_headers_tactful_reads() -> None:
    for topic in INPUT_TOPICS:
        named = set().union(*(_headers(m)["properties"] for m in _messages(topic)))
        assert {SEQ_HEADER, CLOCK_HEADER} <= named, topic
        markers = [m for m in _messages(topic) if CLOCK_HEADER in _headers(m)["required"]]
        assert len(markers) == 1, topic  # the clock marker, a message of its own


# ------------------------------------------ real records against the document


def _registry() -> Registry:
    registry: Registry = Registry()
    for path in [DOCUMENT, *SCHEMAS.rglob("*.json")]:
        contents = _load(path)
        if path == DOCUMENT:
            resource = DRAFT7.create_resource(contents)
        else:
            resource = Resource.from_contents(contents, default_specification=DRAFT7)
        registry = registry.with_resource(path.as_uri(), resource)
        if resource.id():  # the files' own $id: their inner refs resolve against it
            registry = registry.with_resource(resource.id(), resource)
    return registry


REGISTRY = _registry()


@functools.cache
def _payload_validators(topic: str) -> list[Draft7Validator]:
    cid, channel = _channel(topic)
    validators = []
    for name in channel["messages"]:
        pointer = f"{DOCUMENT.as_uri()}#/channels/{cid}/messages/{name}"
        _, message = _resolve(DOCUMENT, f"#/channels/{cid}/messages/{name}")
        if "$ref" in message:
            pointer = f"{DOCUMENT.as_uri()}{message['$ref']}"
        validators.append(Draft7Validator({"$ref": f"{pointer}/payload"}, registry=REGISTRY))
    return validators


def _accepted(topic: str, record: object) -> bool:
    return any(v.is_valid(record) for v in _payload_validators(topic))


def test_real_input_records_match_the_payload_of_their_topic_alone_or_batched() -> None:
    events = [orjson.loads(x) for x in EXAMPLES.read_bytes().splitlines() if x.strip()]
    events += list(generate(20, 3000, seed=7))  # enough for a bounced among them
    assert {e["type"] for e in events} == set(EVENT_TYPES)
    by_topic: dict[str, list[dict[str, Any]]] = {}
    per_type: dict[str, int] = {}
    for event in events:  # a few of each type: every shape, in reasonable time
        per_type[event["type"]] = per_type.get(event["type"], 0) + 1
        if per_type[event["type"]] <= 25:
            by_topic.setdefault(TYPE_TOPIC[event["type"]], []).append(event)
    for topic, records in by_topic.items():
        for record in records:
            assert _accepted(topic, record), record
        assert _accepted(topic, records[:20])  # a tracker's array message
        other = next(t for t in INPUT_TOPICS if t != topic)
        assert not _accepted(other, records[0]), (other, records[0])


def test_real_outputs_match_the_payloads_of_their_topics() -> None:
    intents, decisions, dead = io.BytesIO(), io.BytesIO(), io.BytesIO()
    generated = [dumps_line(e) for e in generate(100, 3000, seed=3)]
    generated.insert(10, b'{"type": "page_view"}')
    # A story whose deferred sms is cancelled: the intents topic's second message.
    cancelled = (SCENARIOS / "sms_3am" / "events.jsonl").read_bytes().splitlines()
    for lines in (generated, cancelled):
        replay_lines(lines, Engine(load_policy()), intents, decisions, deadletter_out=dead)
    kinds = set()
    for topic, out in (("intents", intents), ("decisions", decisions), ("deadletter", dead)):
        records = [orjson.loads(x) for x in out.getvalue().splitlines()]
        assert records, topic
        for record in records:
            assert _accepted(topic, record), (topic, record)
            kinds.add((topic, bool(record.get("cancelled"))))
    assert {("intents", False), ("intents", True)} <= kinds
    assert not _accepted("intents", {"intent_id": "int-x", "cancelled": True})
