"""The variants of the integration suite's restart and erasure drills that `make test`
leaves out to stay within its time budget: the same drills, the other stores and signals."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_worker_edges import erasure_leaves_no_key
from tests.integration.test_worker_restart import QUICK_RESTARTS, RESTARTS, restart_mid_stream


@pytest.mark.parametrize("variant", [v for v in RESTARTS if v not in QUICK_RESTARTS])
def test_restart_mid_stream_loses_no_intent(kafka_bootstrap: str, tmp_path: Path,
                                            variant: str) -> None:
    restart_mid_stream(kafka_bootstrap, tmp_path, *RESTARTS[variant])


def test_erasure_leaves_no_key_of_the_customer_in_memory(kafka_bootstrap: str,
                                                          tmp_path: Path) -> None:
    erasure_leaves_no_key(kafka_bootstrap, tmp_path, "memory://")
