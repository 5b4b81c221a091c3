"""What a step hands to the runtime, and what the runtime's at-least-once delivery asks
of every step: to know an input it already applied."""

from __future__ import annotations

from tactful.core.outputs import Cancellation, ContactIntent, Decision
from tactful.core.policy import Policy

SESSION, CUSTOMER, SKU = "session", "customer", "sku"
# ERASED stores an ErasureMark under ErasureKeys.mark(...): no id, only a keyed hash.
ERASED = "erased"
# Not scopes with state: HOLDERS delivers a SkuSignal to every customer holding the sku;
# INDEX updates that holder index (key: sku, message: CartIndex).
HOLDERS, INDEX = "holders", "index"

Internal = tuple[str, str, object]  # (scope, key, message)


class Outbox:
    """What one step produced, in emission order."""

    __slots__ = ("decisions", "intents", "internal")

    def __init__(self) -> None:
        self.intents: list[tuple[str, ContactIntent | Cancellation]] = []
        self.decisions: list[tuple[str, Decision]] = []
        self.internal: list[Internal] = []

    def clear(self) -> None:
        """Drop everything: after it is sent, or when the step that made it failed."""
        self.intents.clear()
        self.decisions.clear()
        self.internal.clear()


def first_time(policy: Policy, seen: dict[str, float], event_id: str, t: float) -> bool:
    """Record ``event_id``; False when it was seen within the dedup window."""
    if event_id in seen:
        return False
    seen[event_id] = t
    cutoff = t - policy.dedup_window
    while seen:
        oldest = next(iter(seen))
        if seen[oldest] > cutoff:
            break
        del seen[oldest]
    return True
