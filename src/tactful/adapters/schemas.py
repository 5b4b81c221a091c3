"""JSON Schema (2020-12) documents for every record tactful reads or writes.

The Structs of ``core/events.py`` and ``core/outputs.py`` are the source; the
files under ``schemas/`` are their generated, checked-in form (a test keeps
them equal). ``python -m tactful.adapters.schemas --write DIR`` regenerates.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import msgspec
import orjson

from tactful.core.events import EVENT_TYPES, AnyEvent, StorefrontEvent
from tactful.core.outputs import (
    DEFERRED_REASON,
    Cancellation,
    ContactIntent,
    DeadLetter,
    Decision,
)

DIALECT = "https://json-schema.org/draft/2020-12/schema"
BASE_ID = "https://tactful.dev/schemas/"

# A customer_id in a storefront event must say how it was established (SPEC §1).
_IDENTITY_RULE = {
    "if": {"properties": {"customer_id": {"type": "string"}}, "required": ["customer_id"]},
    "then": {"required": ["identity"], "properties": {"identity": {"$ref": "#/$defs/Identity"}}},
}


# SPEC §2: reason is null only for emitted, and a deferred decision names what moved its
# send_after.
_DECISION_RULE = {
    "allOf": [
        {
            "if": {"properties": {"outcome": {"const": "emitted"}}},
            "then": {"properties": {"reason": {"type": "null"}}},
            "else": {"properties": {"reason": {"type": "string"}}},
        },
        {
            "if": {"properties": {"outcome": {"const": "deferred"}}},
            "then": {"properties": {"reason": {"const": DEFERRED_REASON}}},
        },
    ],
}


def _document(schema: dict[str, Any], name: str, title: str) -> dict[str, Any]:
    return {"$schema": DIALECT, "$id": f"{BASE_ID}{name}", "title": title, **schema}


def documents() -> dict[str, dict[str, Any]]:
    """Relative path -> schema document, for every file under ``schemas/``."""
    docs: dict[str, dict[str, Any]] = {}
    for type_name, event_cls in EVENT_TYPES.items():
        schema = msgspec.json.schema(event_cls)
        if issubclass(event_cls, StorefrontEvent):
            schema["$defs"][event_cls.__name__].update(_IDENTITY_RULE)
        docs[f"events/{type_name}.json"] = _document(
            schema, f"events/{type_name}.json", f"tactful input event '{type_name}'"
        )
    union = msgspec.json.schema(AnyEvent)
    for event_cls in EVENT_TYPES.values():
        if issubclass(event_cls, StorefrontEvent):
            union["$defs"][event_cls.__name__].update(_IDENTITY_RULE)
    docs["events/any.json"] = _document(union, "events/any.json", "any tactful input event")
    outputs = {
        "outputs/intent.json": (ContactIntent, "contact intent on tactful.intents"),
        "outputs/cancellation.json": (Cancellation, "intent cancellation on tactful.intents"),
        "outputs/decision.json": (Decision, "decision record on tactful.decisions"),
        "outputs/deadletter.json": (DeadLetter, "dead-letter record on tactful.deadletter"),
    }
    for path, (cls, title) in outputs.items():
        schema = msgspec.json.schema(cls)
        if cls is Decision:
            schema["$defs"]["Decision"].update(_DECISION_RULE)
        docs[path] = _document(schema, path, title)
    return docs


def render(doc: dict[str, Any]) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tactful.adapters.schemas")
    parser.add_argument("--write", metavar="DIR", help="write the documents under DIR")
    parser.add_argument("--check", metavar="DIR", help="exit 1 when DIR differs from the source")
    args = parser.parse_args(argv)
    stale = []
    for rel, doc in documents().items():
        data = render(doc)
        if args.write:
            target = Path(args.write) / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        if args.check:
            target = Path(args.check) / rel
            if not target.exists() or target.read_bytes() != data:
                stale.append(rel)
    for rel in stale:
        print(f"schemas: {rel} is out of date; "
              "run python -m tactful.adapters.schemas --write schemas", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
