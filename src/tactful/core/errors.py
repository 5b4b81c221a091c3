"""Typed errors: each says which side failed.

- ``BadEvent``: the input is wrong. It goes to the dead-letter topic and is never retried.
- ``TransientError``: infrastructure hiccup. Retry with backoff.
- ``PolicyError``: the policy file is wrong. Refuse to start, naming file, key and reason.
- ``AgentFailure``: an unexpected error while applying valid input. The worker stops
  (fail fast): skipping the input could mean ignoring a "stop"; after a restart by the
  supervisor the input is processed again.
"""

from __future__ import annotations


class TactfulError(Exception):
    """Base of every error tactful raises on purpose."""


class BadEvent(TactfulError):
    """Input that cannot be processed: not JSON, missing field, unknown type, impossible value."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TransientError(TactfulError):
    """Infrastructure failed in a way that may pass: retry."""


class TopicMismatch(TactfulError):
    """An existing topic does not fit the deployment (its partition count differs)."""


class KafkaRefused(TactfulError):
    """The broker answers but refuses tactful: wrong SASL credentials or a certificate
    that does not verify. A setting is wrong; retrying will not help."""


class PolicyError(TactfulError):
    """The policy file is invalid."""

    def __init__(self, file: str, key: str, reason: str, line: int | None = None) -> None:
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {key}: {reason}")
        self.file = file
        self.key = key
        self.reason = reason
        self.line = line


class AgentFailure(TactfulError):
    """An agent met an unexpected error; the message names its type only (no input data)."""
