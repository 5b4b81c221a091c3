"""What tactful writes (SPEC §2): contact intents, cancellations, decisions, dead letters."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Annotated, Literal, get_args

from msgspec import Meta, Struct

Outcome = Literal["emitted", "deferred", "suppressed", "cancelled"]
# A decision's reason (SPEC §2): why it was not simply emitted.
Reason = Literal[
    "no_consent", "consent_expired", "unverified_identity", "quiet_hours", "frequency_cap",
    "cooldown", "min_lag", "converted", "cart_emptied", "topic_opt_out", "sensitive_category",
    "do_not_contact", "gift_excluded", "stale", "erased", "no_channel", "bounced",
]
REASON_CODES: tuple[Reason, ...] = get_args(Reason)
# What moved a deferred intent's send_after: quiet hours are the only guardrail that defers
# (a jurisdiction's forbidden day or hour defers as quiet_hours too, SPEC §4.5).
DEFERRED_REASON: Reason = "quiet_hours"
# An intent's ``reasons``: its trigger kind, then the code of every guardrail it passed, in
# the order of SPEC §4. Codes are part of the contract, named here once and never derived
# from the names of the functions that check them (guardrails.GUARDRAILS pairs the two).
TriggerKind = Literal[
    "abandoned_cart", "assist_offer", "browse_abandonment", "low_stock", "back_in_stock",
    "price_drop", "post_purchase",
]
GuardrailCode = Literal[
    "verified_identity", "consent", "topic_preferences", "do_not_contact", "quiet_hours",
    "frequency_cap", "cooldown", "min_lag", "conversion_exit", "gift_exclusion",
    "sensitive_category", "staleness", "erasure",
]
GUARDRAIL_CODES: tuple[GuardrailCode, ...] = get_args(GuardrailCode)


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
    reasons: Annotated[
        list[TriggerKind | GuardrailCode],
        Meta(description="The trigger kind, then the code of each guardrail the intent "
                         "passed, in the order of SPEC §4 (1 verified_identity ... "
                         "13 erasure)."),
    ]
    consent: ConsentRef
    policy_version: str
    links: Links | None = None


class Cancellation(Struct, gc=False, frozen=True):
    """Withdraws an intent before its ``send_after``; senders must drop it."""

    intent_id: str
    cancelled: bool
    reason: Reason
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
    reason: Annotated[
        Reason | None,
        Meta(description="null only for emitted; a deferred decision names what moved its "
                         "send_after (quiet_hours)."),
    ]
    at: str
    trigger_event_ids: list[str]
    intent_id: str | None = None
    session_id: str | None = None


class DeadLetter(Struct, gc=False, frozen=True):
    reason: str
    topic: str
    partition: int | None
    offset: int | None
    original: str  # base64 of the original bytes (their first ORIGINAL_MAX when longer)
    index: int | None = None  # position in a batched (array) message
    # Only when ``original`` was cut: the whole original's length and SHA-256 (hex).
    original_size: int | None = None
    original_sha256: str | None = None


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
