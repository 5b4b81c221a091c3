"""``tactful worker`` whose engine fails on every customer-side input, for the fail-fast
drill of test_worker_failfast. The error message carries the customer id on purpose:
the worker must not log it."""

from __future__ import annotations

import sys
from typing import Any

from tactful.core.policy import load_policy
from tactful.service import worker
from tactful.service.settings import from_env


class FaultyWorker(worker.Worker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)

        def fail(state: Any, msg: Any, *rest: Any) -> Any:
            raise KeyError(getattr(msg, "customer_id", "?"))

        self.engine.on_customer = fail  # type: ignore[method-assign]


worker.Worker = FaultyWorker  # type: ignore[misc]
sys.exit(worker.run(from_env(), load_policy()))
