"""``tactful worker`` with a planted fault, for test_worker_failfast. The errors' messages
carry the customer id on purpose: the worker must not log it.

``TACTFUL_TEST_FAULT=engine``: the engine fails on every input of one customer (a poison
pill; the worker dead-letters it and goes on). ``store``: writing that customer's state
fails (infrastructure; the worker stops)."""

from __future__ import annotations

import os
import sys
from typing import Any

from tactful.service import bootstrap, worker

POISON = os.environ["TACTFUL_TEST_POISON"]
FAULT = os.environ["TACTFUL_TEST_FAULT"]


class FaultyWorker(worker.Worker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        healthy = self.engine.on_customer
        write = self._write

        def on_customer(state: Any, msg: Any, *rest: Any) -> Any:
            if getattr(msg, "customer_id", None) == POISON:
                raise KeyError(POISON)
            return healthy(state, msg, *rest)

        def failing_write(table: Any, key: bytes, value: Any) -> None:
            if key == POISON.encode():
                raise KeyError(POISON)
            write(table, key, value)

        if FAULT == "engine":
            self.engine.on_customer = on_customer  # type: ignore[method-assign]
        else:
            for store in self.stores.values():  # each table's writes go through its store
                store.write_value = failing_write


worker.Worker = FaultyWorker  # type: ignore[misc]
sys.exit(bootstrap.run_worker(bootstrap.configure(worker=True)))
