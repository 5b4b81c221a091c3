"""Erasure proof on a generated workload (the one-customer erasure drill is
tests/integration/test_worker_edges.py): customers are erased mid-stream, then every
table the worker keeps is searched for their customer ids and the ids of their sessions,
in keys and values:

- the RocksDB files on disk (each table's store, opened read-only after a clean stop);
- the memory store through what the worker shows: the admin API answers ``known: false``
  for each of them, and the changelogs it is restored from are searched below;
- every changelog topic of the worker, once compaction has run (short ``segment.ms``,
  ``min.cleanable.dirty.ratio`` and ``delete.retention.ms`` set on those topics).

Size: ``TACTFUL_DRILL_ERASURE_EVENTS`` events (default 10000), 20 erasures added to the
generator's own.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from tests.drills.results import record
from tests.integration.harness import deployment
from tests.integration.test_worker_edges import _compact_now, _roll_segments

UNTIL = "2026-07-31T00:00:00Z"
EVENTS = int(os.environ.get("TACTFUL_DRILL_ERASURE_EVENTS", "10000"))
ADMIN_TOKEN = "drill-admin-token-0123456789"


def with_erasures(path: Path, extra: int) -> tuple[set[str], set[str]]:
    """Add an erasure for ``extra`` customers, one minute after their last event; the
    erased customers (these and the generator's own, when nothing of them follows) and
    the sessions they logged in with."""
    rows = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    last: dict[str, int] = {}
    for i, e in enumerate(rows):
        if e.get("customer_id"):
            last[str(e["customer_id"])] = i
    chosen = sorted(last, key=lambda c: last[c])[len(last) // 4:][::max(1, len(last) // 40)]
    chosen = chosen[:extra]
    from datetime import datetime, timedelta

    for n, c in enumerate(chosen):
        ts = datetime.fromisoformat(str(rows[last[c]]["ts"]).replace("Z", "+00:00"))
        rows.append({"event_id": f"erase-{n}", "type": "erase_requested",
                     "ts": (ts + timedelta(minutes=1)).isoformat(), "customer_id": c})

    def at(e: dict[str, object]) -> float:
        return datetime.fromisoformat(str(e["ts"]).replace("Z", "+00:00")).timestamp()

    rows.sort(key=at)
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in rows))
    erased_at = {str(e["customer_id"]): i for i, e in enumerate(rows)
                 if e["type"] == "erase_requested"}
    erased = {c for c, i in erased_at.items()
              if not any(e.get("customer_id") == c for e in rows[i + 1:])}
    sessions = {str(e["session_id"]) for e in rows if e.get("customer_id") in erased
                and e.get("session_id") and (e.get("identity") or {}).get("method")
                in ("login", "email_link")}
    later = {str(e["session_id"]) for c in erased for e in rows[erased_at[c] + 1:]
             if e.get("session_id")}
    return erased, sessions - later


async def _changelogs(bootstrap: str, app_id: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return sorted(t for t in await admin.list_topics()
                      if t.startswith(f"{app_id}-") and t.endswith("-changelog"))
    finally:
        await admin.close()


def _found(blob: bytes, ids: set[bytes]) -> set[bytes]:
    return {i for i in ids if i in blob}


@pytest.mark.parametrize("store", ["rocksdb://", "memory://"])
def test_erased_customers_are_nowhere_in_tables_or_changelogs(kafka_bootstrap: str,
                                                              tmp_path: Path,
                                                              store: str) -> None:
    env = {"TACTFUL_STORE": store, "TACTFUL_ADMIN_TOKEN": ADMIN_TOKEN}
    with deployment(kafka_bootstrap, tmp_path, extra_env=env) as dep:
        events = tmp_path / "workload.jsonl"
        dep.cli("generate", "--customers", str(max(100, EVENTS // 40)), "--events",
                str(EVENTS), "--seed", "47", "--out", str(events))
        erased, sessions = with_erasures(events, 20)
        # Whole tokens: "cust-1" is searched with its JSON/msgpack neighbours left out, so
        # it is not found in "cust-12": each id is searched followed by a non-id byte.
        ids = {i.encode() for i in erased | sessions}
        worker = dep.start_worker(slot=0)
        dep.wait_ready(1)
        dep.cli("produce", str(events), "--until", UNTIL)
        dep.read("decisions", quiet_seconds=6.0)  # every input applied
        # A quiet decisions topic does not prove the last erasures applied: ask until
        # every answer is in (or a minute has passed).
        deadline = time.monotonic() + 60
        while True:
            known = [orjson.loads(dep.get(0, f"/customers/{c}/decisions",
                                          {"Authorization": f"Bearer {ADMIN_TOKEN}"})[1])
                     .get("known") for c in sorted(erased)]
            if not any(known) or time.monotonic() > deadline:
                break
            time.sleep(2)
        changelogs = asyncio.run(_changelogs(kafka_bootstrap, dep.app_id))
        asyncio.run(_compact_now(kafka_bootstrap, changelogs))
        deadline = time.monotonic() + 180
        while True:
            left = {t: sorted(i.decode() for i in _leaks(dep.read_topic(t, 1.0), ids))
                    for t in changelogs}
            left = {t: v for t, v in left.items() if v}
            if not left or time.monotonic() > deadline:
                break
            asyncio.run(_roll_segments(kafka_bootstrap, changelogs, dep.partitions))
            time.sleep(2)
        dep.stop(worker)
        disk = _rocksdb_leaks(tmp_path / "data-0", ids) if store.startswith("rocksdb") else {}
    record(f"erasure_proof-{store.rstrip(':/')}", {
        "events": EVENTS, "erased_customers": len(erased), "their_sessions": len(sessions),
        "changelogs_scanned": len(changelogs), "changelogs_with_ids": len(left),
        "rocksdb_stores_with_ids": len(disk),
        "admin_api_known": sum(1 for k in known if k), "admin_api_asked": len(known),
    })
    assert len(erased) >= 15, erased
    assert known == [False] * len(erased), known
    assert not left, left
    assert not disk, disk


def _leaks(records: list[tuple[bytes | None, bytes | None]], ids: set[bytes]) -> set[bytes]:
    found: set[bytes] = set()
    for k, v in records:
        found |= _whole(k or b"", ids) | _whole(v or b"", ids)
    return found


def _whole(blob: bytes, ids: set[bytes]) -> set[bytes]:
    """The ids that occur in ``blob`` as whole ids (not followed by another id byte)."""
    out = set()
    for i in _found(blob, ids):
        start = blob.find(i)
        while start != -1:
            end = start + len(i)
            if end == len(blob) or not (chr(blob[end]).isalnum() or blob[end] in b"-_"):
                out.add(i)
                break
            start = blob.find(i, start + 1)
    return out


def _rocksdb_leaks(data_dir: Path, ids: set[bytes]) -> dict[str, list[str]]:
    from rocksdict import AccessType, Options, Rdict

    stores = sorted(data_dir.rglob("*.db"))
    assert stores, "no RocksDB store on disk"
    leaks: dict[str, list[str]] = {}
    scanned = 0
    for path in stores:
        db = Rdict(str(path), options=Options(raw_mode=True),
                   access_type=AccessType.read_only())
        try:
            for key, value in db.items():
                scanned += 1
                found = _whole(key, ids) | _whole(value, ids)
                if found:
                    leaks.setdefault(path.name, []).extend(sorted(i.decode() for i in found))
        finally:
            db.close()
    assert scanned, "the RocksDB stores were empty: nothing was checked"
    return leaks
