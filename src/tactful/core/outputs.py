"""What tactful writes (SPEC §2): contact intents, cancellations, decisions, dead letters."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Literal

from msgspec import Struct

Outcome = Literal["emitted", "deferred", "suppressed", "cancelled"]
REASON_CODES = (
    "no_consent", "consent_expired", "unverified_identity", "quiet_hours", "frequency_cap",
    "cooldown", "min_lag", "converted", "cart_emptied", "topic_opt_out", "sensitive_category",
    "do_not_contact", "gift_excluded", "stale", "erased", "no_channel",
)
Reason = Literal[
    "no_consent", "consent_expired", "unverified_identity", "quiet_hours", "frequency_cap",
    "cooldown", "min_lag", "converted", "cart_emptied", "topic_opt_out", "sensitive_category",
    "do_not_contact", "gift_excluded", "stale", "erased", "no_channel",
]


class IntentItem(Struct, gc=False, frozen=True):
    sku: str
    qty: int
    price: float


class Links(Struct, gc=False, frozen=True):
    unsubscribe: str
    preferences: str


class ConsentRef(Struct, gc=False, frozen=True):
    channel: str
    granted_at: str
    source: str


class ContactIntent(Struct, gc=False, frozen=True, omit_defaults=True):
    """One contact a sender may deliver between ``send_after`` and ``send_before``."""

    intent_id: str
    customer_id: str
    channel: str
    kind: str
    items: list[IntentItem]
    created_at: str
    send_after: str
    send_before: str
    topic: str
    reasons: list[str]
    consent: ConsentRef
    policy_version: str
    links: Links | None = None


class Cancellation(Struct, gc=False, frozen=True):
    """Withdraws an intent before its ``send_after``; senders must drop it."""

    intent_id: str
    cancelled: bool
    reason: str
    customer_id: str
    channel: str
    at: str


class Decision(Struct, gc=False, frozen=True, omit_defaults=True):
    """The audit record of one evaluated trigger."""

    decision_id: str
    customer_id: str | None
    kind: str
    channel: str | None
    outcome: Outcome
    reason: str | None
    at: str
    trigger_event_ids: list[str]
    intent_id: str | None = None
    session_id: str | None = None


class DeadLetter(Struct, gc=False, frozen=True):
    reason: str
    topic: str
    partition: int | None
    offset: int | None
    original: str  # base64 of the original bytes
    index: int | None = None  # position in a batched (array) message


def iso(t: float) -> str:
    """POSIX seconds as RFC 3339 UTC (``Z``); sub-second digits only when present."""
    dt = datetime.fromtimestamp(t, UTC)
    if dt.microsecond:
        return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def stable_id(prefix: str, *parts: object) -> str:
    """A deterministic id: the same parts always give the same id."""
    h = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=10)
    return f"{prefix}-{h.hexdigest()}"
