"""Garbage-collector settings for long runs over large state.

tactful's state (msgspec Structs in dicts and lists) never forms reference
cycles, yet the cyclic collector's full passes walk all of it: ~20 % of replay
time in profiles (BENCHMARKS.md). Objects alive at start-up are frozen out of
collection and the young-generation threshold is raised; reference counting
still frees everything as before.
"""

from __future__ import annotations

import gc


def relax_gc(threshold: int = 100_000) -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(threshold, 50, 1000)
