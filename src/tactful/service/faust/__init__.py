"""Everything of Faust that tactful extends or reaches into, in one place.

Faust (faust-streaming) runs the worker's agents, tables and commits; tactful changes
how its commits order outputs and state (``gate``), how its tables are recovered
(``recovery``), how fetched records reach the agents (``feed``: a topic-partition's
fetch at a time instead of Faust's per-record stream) and how its app is configured
(``app``). Each of those subclasses a
Faust class or touches a private name: they live here and nowhere else, the version
range they were tested with is pinned in pyproject.toml, and
tests/unit/test_faust_contract.py fails, naming what changed, when an upgrade removes
or reshapes any of them.
"""
