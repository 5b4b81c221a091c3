"""Local RocksDB table state is trusted only after a clean shutdown.

Faust writes a table change to the local RocksDB store at once, and (through the gate)
to the changelog only once the outputs sent before it are on the broker. After a crash
the local store can therefore hold changes whose outputs never left, for inputs whose
offsets were not committed: processing them again would find them "already done". As
Kafka Streams does with its checkpoint file, the worker marks a clean exit; at start,
local state without that mark is discarded and the tables are restored from their
changelogs, which never run ahead of the outputs.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

log = logging.getLogger("tactful.local_state")

MARK = ".clean-shutdown"


def open_local_state(tabledir: Path) -> bool:
    """Call at start. Returns True when local state was discarded (no clean-exit mark)."""
    mark = tabledir / MARK
    had_state = tabledir.is_dir() and any(p.name != MARK for p in tabledir.iterdir())
    discarded = False
    if had_state and not mark.exists():
        log.warning("the last run did not stop cleanly: local table state discarded, "
                    "restoring from the changelogs")
        shutil.rmtree(tabledir)
        discarded = True
    mark.unlink(missing_ok=True)  # a crash from here on leaves no mark
    return discarded


def close_local_state(tabledir: Path) -> None:
    """Call after a clean stop: the local state matches the changelogs."""
    if tabledir.is_dir():
        (tabledir / MARK).touch()
