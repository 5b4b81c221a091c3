"""An independent model of SPEC.md's guardrails, used to judge the engine's outputs.

Written from SPEC.md and docs/semantics.md only (never from engine.py). It
does not re-implement the engine: it folds the input events into the few facts each
invariant needs (consents, blocks, preferences, verified sessions, erasures, gifts) and
checks every record the engine wrote against them. Each ``check_*`` function returns a
list of human-readable violations (empty = fine).

Where the spec leaves room the checker is lenient, never stricter than the spec:
- a ``preferences_set`` without some field may either keep or clear that field (both
  readings are tried; a record passes if it is right under either);
- a session counts as verified for C once any storefront event in it named C with
  ``login``/``email_link`` (since C's last erasure);
- caps and cooldowns ignore intents before the customer's last erasure.

Where a decision sits among the input events (SPEC §5): a timer decision due at T is
taken after every event with ts < T and before every event with ts ≥ T ("before an event
is applied, every trigger due at or before its timestamp fires"); a decision made by an
event (stock/price triggers, cancellations) is taken right after that event.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import orjson

# --- SPEC §3-§4 default numbers ------------------------------------------------------------
M, H, D = 60, 3600, 86400
CHANNELS = ("email", "sms", "push", "phone")
VERIFIED = frozenset({"login", "email_link"})
SENSITIVE = frozenset({"health", "medical", "adult", "pregnancy", "age_related"})
QUIET_CHANNELS = frozenset({"sms", "push", "phone"})
DEFAULT_TZ = "America/New_York"
ALLOWED_FROM, ALLOWED_UNTIL = 8 * 60, 21 * 60  # minutes of the local day
CAPS = ((16 * H, 1, None), (7 * D, 3, None), (24 * H, 3, "sms"))  # (window, max, channel)
COOLDOWN = 72 * H
VALIDITY = 24 * H
BOUNCE_HOLD = 30 * D  # the policy's [feedback] bounce_suppress (not in SPEC: semantics.md)
DEDUP_WINDOW = 7 * D
SESSION_TTL = 30 * D  # not in SPEC: the policy's session_ttl; only used to be lenient
CART_KINDS = frozenset({"abandoned_cart", "assist_offer"})
EVENT_KINDS = frozenset({"low_stock", "back_in_stock", "price_drop"})
CART_DELAY = {"abandoned_cart": 4 * H, "assist_offer": 48 * H}
POST_PURCHASE_DELAY = 7 * D  # SPEC §3: a follow-up 7 days after a purchase
AFTER_REMINDER = 24 * H  # SPEC §3: the call only after a reminder went out >= 24 h before,
REMINDER_CHANNELS = frozenset({"email"})  # on a channel the policy names (default email only)
# SPEC §2: the reason codes of a decision (null only for emitted; deferred: quiet_hours) ...
REASON_CODES = frozenset(
    {
        "no_consent",
        "consent_expired",
        "unverified_identity",
        "quiet_hours",
        "frequency_cap",
        "cooldown",
        "min_lag",
        "converted",
        "cart_emptied",
        "topic_opt_out",
        "sensitive_category",
        "do_not_contact",
        "gift_excluded",
        "stale",
        "erased",
        "no_channel",
        "bounced",  # not in SPEC §2's list: added with the schema (docs/semantics.md, Bounces)
    }
)
# ... and the code of each guardrail of §4, in its order, that an intent lists after its kind
# (the names SPEC §2 gives, the others after §4's headings; the schema documents the list).
GUARDRAIL_CODES = (
    "verified_identity",  # 1
    "consent",  # 2
    "topic_preferences",  # 3
    "do_not_contact",  # 4
    "quiet_hours",  # 5
    "frequency_cap",  # 6
    "cooldown",  # 7
    "min_lag",  # 8
    "conversion_exit",  # 9
    "gift_exclusion",  # 10
    "sensitive_category",  # 11
    "staleness",  # 12
    "erasure",  # 13
)
ACTIVITY = frozenset({"cart_add", "cart_remove", "checkout_started", "purchase"})
STOREFRONT = frozenset(
    {
        "page_view",
        "product_view",
        "cart_add",
        "cart_remove",
        "checkout_started",
        "purchase",
        "login",
        "logout",
    }
)
KINDS = frozenset(
    {
        "abandoned_cart",
        "assist_offer",
        "browse_abandonment",
        "low_stock",
        "back_in_stock",
        "price_drop",
        "post_purchase",
    }
)
TOPIC_OF = {
    "abandoned_cart": "cart_reminders",
    "assist_offer": "cart_reminders",
    "browse_abandonment": "recommendations",
    "low_stock": "stock_alerts",
    "back_in_stock": "stock_alerts",
    "price_drop": "deals",
    "post_purchase": "recommendations",
}
CHANNELS_OF = {
    "abandoned_cart": ("email", "push", "sms"),
    "assist_offer": ("phone",),
    "browse_abandonment": ("email",),
    "low_stock": ("push", "sms", "email"),
    "back_in_stock": ("push", "email", "sms"),
    "price_drop": ("email", "push"),
    "post_purchase": ("email",),
}


def ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


# --- the folded facts ------------------------------------------------------------------------


@dataclass
class Grant:
    at: float
    source: str
    expires_at: float | None


@dataclass
class Prefs:
    timezone: str | None = None
    quiet_hours: tuple[str, str] | None = None
    region: str | None = None
    opt_out: frozenset[str] = frozenset()
    opt_in: frozenset[str] = frozenset()


@dataclass
class Customer:
    # the grants since the last revocation / erasure, per channel (empty: no consent)
    grants: dict[str, list[Grant]] = field(default_factory=dict)
    blocked: set[str] = field(default_factory=set)  # complained/unsubscribed/do_not_contact
    prefs: tuple[Prefs, Prefs] = (Prefs(), Prefs())  # (fields merge, each event replaces)
    erased_at: int = -1  # index of the last erase_requested (-1: never)
    verified_sessions: set[str] = field(default_factory=set)  # since erased_at
    gift_skus: set[str] = field(default_factory=set)


@dataclass
class World:
    customers: dict[str, Customer] = field(default_factory=dict)
    binding: dict[str, str] = field(default_factory=dict)  # session -> verified customer

    def customer(self, c: str) -> Customer:
        return self.customers.setdefault(c, Customer())


def _hhmm(v: str) -> int:
    return int(v[:2]) * 60 + int(v[3:5])


def verified_claim(ev: dict[str, Any]) -> str | None:
    ident = ev.get("identity") or {}
    if ev.get("customer_id") and ident.get("method") in VERIFIED:
        return str(ev["customer_id"])
    return None


def apply(world: World, index: int, ev: dict[str, Any]) -> None:
    """Fold one accepted event into the facts (SPEC §1, §4; semantics.md)."""
    type_ = ev["type"]
    t = ts(ev["ts"])
    if type_ in STOREFRONT:
        session = ev["session_id"]
        claim = verified_claim(ev)
        if claim is not None:
            world.customer(claim).verified_sessions.add(session)
            world.binding.setdefault(session, claim)
        owner = claim or world.binding.get(session)  # unverified claims never rebind
        if type_ == "purchase" and ev.get("gift") and owner is not None:
            world.customer(owner).gift_skus.update(i["sku"] for i in ev["items"])
        if type_ == "logout":
            world.binding.pop(session, None)
        return
    c = ev.get("customer_id")
    if c is None:
        return
    cust = world.customer(c)
    if type_ == "consent_granted":
        exp = ev.get("expires_at")
        cust.grants.setdefault(ev["channel"], []).append(
            Grant(t, ev["source"], ts(exp) if exp else None)
        )
        cust.blocked.discard(ev["channel"])
    elif type_ == "consent_revoked":
        cust.grants[ev["channel"]] = []
    elif type_ in ("complained", "unsubscribed"):
        cust.blocked.add(ev["channel"])
    elif type_ == "do_not_contact":
        cust.blocked.update(CHANNELS)
    elif type_ == "erase_requested":
        world.customers[c] = Customer(erased_at=index)
        for s in [s for s, b in world.binding.items() if b == c]:
            del world.binding[s]
    elif type_ == "preferences_set":
        merge, _ = cust.prefs
        qh = ev.get("quiet_hours")
        qh_t = (qh["start"], qh["end"]) if qh else None
        opt_out = ev.get("topics_opt_out")
        opt_in = ev.get("topics_opt_in")
        merged = Prefs(
            timezone=ev.get("timezone") or merge.timezone,
            quiet_hours=qh_t or merge.quiet_hours,
            region=ev.get("region") or merge.region,
            opt_out=frozenset(opt_out) if opt_out is not None else merge.opt_out,
            opt_in=frozenset(opt_in) if opt_in is not None else merge.opt_in,
        )
        replaced = Prefs(
            ev.get("timezone"), qh_t, ev.get("region"), frozenset(opt_out or ()),
            frozenset(opt_in or ()),
        )
        cust.prefs = (merged, replaced)


# --- quiet hours (SPEC §4.5) -----------------------------------------------------------------


@cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _zone_tab() -> dict[str, list[str]]:
    """Country -> zones, from the tz database zoneinfo reads (zone.tab)."""
    import zoneinfo
    from pathlib import Path

    for base in zoneinfo.TZPATH:
        path = Path(base) / "zone.tab"
        if path.is_file():
            table: dict[str, list[str]] = {}
            for line in path.read_text().splitlines():
                if line and not line.startswith("#"):
                    cc, _, name, *_ = line.split("\t")
                    table.setdefault(cc, []).append(name)
            return table
    raise RuntimeError("no zone.tab")


ZONE_TAB = _zone_tab()
# SPEC §4.5's shipped rules, as SPEC states them. Florida spans two zones (the panhandle west
# of the Apalachicola is Central), Oklahoma is Central, Maryland Eastern.
SUBDIVISION_ZONES = {
    "US-FL": ("America/New_York", "America/Chicago"),
    "US-OK": ("America/Chicago",),
    "US-MD": ("America/New_York",),
}
EIGHT_TO_EIGHT = frozenset({"US-FL", "US-OK", "US-MD"})  # sms + phone 08:00-20:00, 3 / 24 h


def zones_of(prefs: Prefs) -> tuple[str, ...]:
    """SPEC §4.5: the customer's zone; unknown, every zone of the region; else the default."""
    if prefs.timezone:
        return (prefs.timezone,)
    region = prefs.region
    if region:
        if region in SUBDIVISION_ZONES:
            return SUBDIVISION_ZONES[region]
        if ZONE_TAB.get(region[:2]):
            return tuple(ZONE_TAB[region[:2]])
    return (DEFAULT_TZ,)


@cache
def french_holidays(region: str, year: int) -> frozenset[Any]:
    import holidays

    subdiv = region[3:] if region[3:] in ("57", "6AE") else None  # Alsace-Moselle's own
    if region in ("FR-67", "FR-68"):
        subdiv = "6AE"
    return frozenset(holidays.country_holidays("FR", subdiv=subdiv, years=year))


def _local_allowed(local: datetime, prefs: Prefs, channel: str) -> bool:
    minute = local.hour * 60 + local.minute
    if channel in QUIET_CHANNELS:
        if not ALLOWED_FROM <= minute < ALLOWED_UNTIL:
            return False
        if prefs.quiet_hours:
            start, end = map(_hhmm, prefs.quiet_hours)
            if start < end and start <= minute < end:
                return False
            if start > end and (minute >= start or minute < end):
                return False
    region = prefs.region or ""
    if region in EIGHT_TO_EIGHT and channel in ("sms", "phone"):
        return 8 * 60 <= minute < 20 * 60
    if region[:2] == "US" and channel in ("sms", "phone"):
        return 8 * 60 <= minute < 21 * 60  # TCPA
    if region[:2] == "FR" and channel == "phone":
        if local.weekday() >= 5 or local.date() in french_holidays(region, local.year):
            return False
        return 10 * 60 <= minute < 13 * 60 or 14 * 60 <= minute < 20 * 60
    return True


def allowed(t: float, prefs: Prefs, channel: str = "sms") -> bool:
    """May ``channel`` reach the customer at instant t? sms/push/phone 08:00-21:00 local,
    minus the customer's own quiet period [start, end) (which may wrap midnight), minus the
    region's calling rules (SPEC §4.5), in every zone the customer may be in."""
    return all(
        _local_allowed(datetime.fromtimestamp(t, _zone(z)), prefs, channel)
        for z in zones_of(prefs)
    )


def next_allowed(t: float, prefs: Prefs, channel: str = "sms") -> float | None:
    """t itself if allowed, else the next whole minute that is (None: none within 25 h,
    beyond every intent's validity)."""
    if allowed(t, prefs, channel):
        return t
    m = math.ceil(t / 60) * 60
    for _ in range(25 * 60):
        if allowed(m, prefs, channel):
            return float(m)
        m += 60
    return None


# --- a replay run: inputs and outputs, positioned -------------------------------------------


@dataclass
class Event:
    index: int
    id: str
    type: str
    ts: float
    raw: dict[str, Any]


class Run:
    """The accepted input events (after dedup) and the engine's output records."""

    def __init__(
        self,
        events: Iterable[dict[str, Any]],
        records: list[dict[str, Any]],
        decisions: list[dict[str, Any]],
    ) -> None:
        self.events: list[Event] = []
        first_seen: dict[str, float] = {}
        for raw in events:
            t = ts(raw["ts"])
            eid = raw["event_id"]
            if eid in first_seen and t - first_seen[eid] < DEDUP_WINDOW:
                continue  # SPEC §1: a repeated id is processed once
            first_seen[eid] = t
            self.events.append(Event(len(self.events), eid, raw["type"], t, raw))
        self.by_id = {e.id: e for e in self.events}
        self.records = records
        self.intents = [r for r in records if not r.get("cancelled")]
        self.cancellations = [r for r in records if r.get("cancelled")]
        self.decisions = decisions
        self.decision_of: dict[str, dict[str, Any]] = {}
        for d in decisions:
            if d.get("intent_id") and d["outcome"] in ("emitted", "deferred"):
                self.decision_of.setdefault(d["intent_id"], d)
        self._worlds: dict[int, World] = {}  # prefix length -> the facts after it

    @classmethod
    def from_bytes(cls, lines: Iterable[bytes], intents: bytes, decisions: bytes) -> Run:
        return cls(
            [orjson.loads(x) for x in lines if x.strip()],
            [orjson.loads(x) for x in intents.splitlines()],
            [orjson.loads(x) for x in decisions.splitlines()],
        )

    # positions ------------------------------------------------------------------------------
    def position(self, decision: dict[str, Any]) -> float:
        """Where the decision was taken: i - 0.5 is just before event i, i + 0.5 just after."""
        if decision["outcome"] == "cancelled" or decision["kind"] in EVENT_KINDS:
            idx = [
                self.by_id[x].index
                for x in decision.get("trigger_event_ids") or ()
                if x in self.by_id
            ]
            if idx:
                return max(idx) + 0.5
            at = ts(decision["at"])
            return sum(1 for e in self.events if e.ts <= at) - 0.5
        at = ts(decision["at"])
        return sum(1 for e in self.events if e.ts < at) - 0.5

    def intent_position(self, intent: dict[str, Any]) -> float | None:
        d = self.decision_of.get(intent["intent_id"])
        return None if d is None else self.position(d)

    def world_at(self, pos: float) -> World:
        """The facts after the events before position pos (folded afresh, then cached)."""
        n = math.ceil(pos)
        if n not in self._worlds:
            world = World()
            for e in self.events[:n]:
                apply(world, e.index, e.raw)
            self._worlds[n] = world
        return self._worlds[n]

    def customer_at(self, c: str, pos: float) -> Customer:
        return self.world_at(pos).customers.get(c) or Customer()

    def storefront_triggers(self, decision: dict[str, Any]) -> list[Event]:
        return [
            self.by_id[x]
            for x in decision.get("trigger_event_ids") or ()
            if x in self.by_id and self.by_id[x].type in STOREFRONT
        ]

    def positioned_intents(self) -> Iterable[tuple[dict[str, Any], float]]:
        """Each intent with its decision's position (one without is check_structure's)."""
        for intent in self.intents:
            pos = self.intent_position(intent)
            if pos is not None:
                yield intent, pos


def _desc(intent: dict[str, Any]) -> str:
    return (
        f"{intent.get('intent_id')} ({intent.get('kind')}/{intent.get('channel')} to "
        f"{intent.get('customer_id')} created {intent.get('created_at')})"
    )


# --- 1. consent ------------------------------------------------------------------------------


def check_consent(run: Run) -> list[str]:
    out = []
    for intent, pos in run.positioned_intents():
        ch, created = intent["channel"], ts(intent["created_at"])
        grants = run.customer_at(intent["customer_id"], pos).grants.get(ch) or []
        if not grants:
            out.append(f"{_desc(intent)}: no {ch} consent granted (or it was revoked/erased)")
            continue
        latest = grants[-1]
        if latest.expires_at is not None and latest.expires_at <= created:
            out.append(f"{_desc(intent)}: {ch} consent expired at {latest.expires_at}")
        ref = intent.get("consent") or {}
        if ref.get("channel") != ch:
            out.append(f"{_desc(intent)}: consent.channel {ref.get('channel')} != {ch}")
        if not any(
            ref.get("source") == g.source
            and ref.get("granted_at") is not None
            and ts(ref["granted_at"]) == g.at
            for g in grants
        ):
            out.append(f"{_desc(intent)}: consent {ref} is not a current {ch} grant")
    return out


# --- 2. verified identity ----------------------------------------------------------------------


def check_verified(run: Run) -> list[str]:
    out = []
    for d in run.decisions:
        c = d.get("customer_id")
        if c is None:
            if not d.get("session_id"):
                out.append(f"decision {d['decision_id']}: customer_id null but no session_id")
            continue
        if d.get("reason") == "unverified_identity":
            out.append(f"decision {d['decision_id']}: unverified_identity under customer {c}")
        if d["outcome"] == "cancelled":
            continue
        pos = run.position(d)
        cust = run.customer_at(c, pos)
        if not cust.verified_sessions:
            out.append(
                f"decision {d['decision_id']} ({d['kind']}) under {c}, who was never "
                f"verified (since any erasure) before it"
            )
        for e in run.storefront_triggers(d):
            if e.raw["session_id"] not in cust.verified_sessions:
                out.append(
                    f"decision {d['decision_id']} ({d['kind']}) under {c} is about "
                    f"session {e.raw['session_id']} (event {e.id}) never verified for {c}"
                )
            other = verified_claim(e.raw)
            if other is not None and other != c:
                out.append(
                    f"decision {d['decision_id']} under {c} fed by event {e.id} of "
                    f"verified customer {other}"
                )
    for intent, pos in run.positioned_intents():
        c = intent["customer_id"]
        cust = run.customer_at(c, pos)
        if intent["kind"] in EVENT_KINDS:
            # the carted sku must be in a cart of a session verified for c
            for item in intent.get("items") or ():
                if not _carted_by(run, c, item["sku"], pos, cust):
                    out.append(
                        f"{_desc(intent)}: {item['sku']} never carted in a session "
                        f"verified for {c} (since any erasure)"
                    )
    return out


def _carted_by(run: Run, c: str, sku: str, pos: float, cust: Customer) -> bool:
    for e in run.events[: math.ceil(pos)]:
        if e.type != "cart_add" or e.raw["sku"] != sku:
            continue
        session = e.raw["session_id"]
        if session not in cust.verified_sessions:
            continue
        other = verified_claim(e.raw)
        if other is not None and other != c:
            continue
        if e.index > cust.erased_at or not _verified_before(run, c, session, cust.erased_at):
            return True
    return False


def _verified_before(run: Run, c: str, session: str, index: int) -> bool:
    return any(
        e.type in STOREFRONT and e.raw["session_id"] == session and verified_claim(e.raw) == c
        for e in run.events[: max(index, 0)]
    )


# --- 3. quiet hours --------------------------------------------------------------------------


def check_quiet_hours(run: Run) -> list[str]:
    out = []
    for intent, pos in run.positioned_intents():
        created, after = ts(intent["created_at"]), ts(intent["send_after"])
        if intent["channel"] not in QUIET_CHANNELS:
            if after != created:
                out.append(f"{_desc(intent)}: email held to {intent['send_after']}")
            continue
        candidates = run.customer_at(intent["customer_id"], pos).prefs
        ch = intent["channel"]
        if not any(allowed(after, p, ch) for p in candidates):
            zones = {z for p in candidates for z in zones_of(p)}
            local = [datetime.fromtimestamp(after, _zone(z)).isoformat() for z in zones]
            out.append(
                f"{_desc(intent)}: send_after {intent['send_after']} ({local}) is in "
                f"quiet hours {[p.quiet_hours for p in candidates]}, regions "
                f"{[p.region for p in candidates]}"
            )
        elif not any(next_allowed(created, p, ch) == after for p in candidates):
            expect = sorted({str(next_allowed(created, p, ch)) for p in candidates})
            out.append(
                f"{_desc(intent)}: send_after {intent['send_after']} is not the next "
                f"allowed minute (expected epoch {expect})"
            )
    return out


# --- 4. frequency caps and cooldown ------------------------------------------------------------


def _cooldown_key(run: Run, intent: dict[str, Any]) -> tuple[str, ...]:
    d = run.decision_of[intent["intent_id"]]
    if intent["kind"] in CART_KINDS:
        sessions = sorted({e.raw["session_id"] for e in run.storefront_triggers(d)})
        return (intent["kind"], "cart", *sessions)
    if intent["kind"] == "post_purchase":  # about its purchases (semantics.md: one per order)
        return (intent["kind"], "order", *sorted(d.get("trigger_event_ids") or ()))
    items = intent.get("items") or [{"sku": "?"}]
    return (intent["kind"], "sku", items[0]["sku"])


def check_caps(run: Run) -> list[str]:
    out = []
    active: dict[str, tuple[dict[str, Any], float]] = {}  # intent_id -> (intent, pos)
    for rec in run.records:
        if rec.get("cancelled"):
            active.pop(rec["intent_id"], None)
            continue
        pos = run.intent_position(rec)
        if pos is None:
            continue
        c, t = rec["customer_id"], ts(rec["created_at"])
        erased_at = run.customer_at(c, pos).erased_at
        prior = [
            (j, ts(j["created_at"]))
            for j, jpos in active.values()
            if j["customer_id"] == c and jpos > erased_at
        ]
        for window, cap, channel in CAPS:
            if channel is not None and rec["channel"] != channel:
                continue
            within = [
                j["intent_id"]
                for j, jt in prior
                if (channel is None or j["channel"] == channel) and t - window < jt <= t
            ]
            if len(within) >= cap:
                out.append(
                    f"{_desc(rec)}: cap {cap}/{window // H}h {channel or 'all'} already "
                    f"used by {within}"
                )
        out.extend(_region_caps(run, rec, pos, prior, t))
        key = _cooldown_key(run, rec)
        same = [
            j["intent_id"]
            for j, jt in prior
            if _cooldown_key(run, j) == key and t - COOLDOWN < jt <= t
        ]
        if same:
            out.append(f"{_desc(rec)}: cooldown {key} within 72h of {same}")
        active[rec["intent_id"]] = (rec, pos)
    return out


def _region_caps(
    run: Run, rec: dict[str, Any], pos: float, prior: list[tuple[dict[str, Any], float]],
    t: float,
) -> list[str]:
    """SPEC §4.5: US-FL/OK/MD at most 3 sms + phone per 24 h on the same topic; FR at most
    4 calls per 30 days. A violation only if every reading of the preferences has one."""
    found = []
    for p in run.customer_at(rec["customer_id"], pos).prefs:
        region = p.region or ""
        if region in EIGHT_TO_EIGHT and rec["channel"] in ("sms", "phone"):
            group, window, cap = ("sms", "phone"), 24 * H, 3
            same_topic = True
        elif region[:2] == "FR" and rec["channel"] == "phone":
            group, window, cap, same_topic = ("phone",), 30 * D, 4, False
        else:
            return []
        within = [
            j["intent_id"] for j, jt in prior
            if j["channel"] in group and t - window < jt <= t
            and (not same_topic or j.get("topic") == rec.get("topic"))
        ]
        if len(within) < cap:
            return []
        found.append(f"{_desc(rec)}: {region} cap {cap}/{window // H}h already used by {within}")
    return found[:1]


# --- 5. erasure, do-not-contact, complaints, unsubscribes ------------------------------------


def check_blocks(run: Run) -> list[str]:
    out = []
    for intent, pos in run.positioned_intents():
        c, ch = intent["customer_id"], intent["channel"]
        stop = [
            e
            for e in run.events[: math.ceil(pos)]
            if e.raw.get("customer_id") == c
            and (
                e.type in ("erase_requested", "do_not_contact")
                or (e.type in ("complained", "unsubscribed") and e.raw["channel"] == ch)
            )
        ]
        if not stop:
            continue
        last = stop[-1]
        regranted = any(
            e.index > last.index
            and e.type == "consent_granted"
            and e.raw["customer_id"] == c
            and e.raw["channel"] == ch
            for e in run.events[: math.ceil(pos)]
        )
        if not regranted:
            out.append(
                f"{_desc(intent)}: after {last.type} {last.id} at {last.raw['ts']} "
                f"with no later {ch} consent_granted"
            )
        if last.type == "erase_requested":
            d = run.decision_of[intent["intent_id"]]
            stale = [e.id for e in run.storefront_triggers(d) if e.index < last.index]
            if stale:
                out.append(f"{_desc(intent)}: fed by events {stale} from before erasure {last.id}")
    return out


def check_bounces(run: Run) -> list[str]:
    """semantics.md: after a `bounced` feedback on a channel, no intent on that channel for
    the customer is created within the hold (30 days), unless a later `consent_granted`
    for the channel (stamped no earlier than the bounce) or an erasure came after it."""
    out = []
    for intent, pos in run.positioned_intents():
        c, ch, created = intent["customer_id"], intent["channel"], ts(intent["created_at"])
        before = run.events[: math.ceil(pos)]
        for b in before:
            if not (
                b.type == "bounced"
                and b.raw.get("customer_id") == c
                and b.raw.get("channel") == ch
                and b.ts + BOUNCE_HOLD > created
            ):
                continue
            lifted = any(
                e.index > b.index
                and e.raw.get("customer_id") == c
                and (
                    e.type == "erase_requested"
                    or (e.type == "consent_granted" and e.raw["channel"] == ch and e.ts >= b.ts)
                )
                for e in before
            )
            if not lifted:
                out.append(
                    f"{_desc(intent)}: {ch} bounced ({b.id} at {b.raw['ts']}) less than 30 "
                    f"days before, with no later {ch} consent_granted"
                )
                break
    return out


def check_cancellations_complete(run: Run) -> list[str]:
    """SPEC §2: a revocation, do_not_contact, purchase or erasure that arrives after an
    intent was emitted but before its send_after cancels it (semantics.md: a revocation,
    complaint or unsubscribe only on its channel)."""
    out = []
    cancelled_at: dict[str, float] = {}
    for r in run.cancellations:
        cancelled_at.setdefault(r["intent_id"], ts(r["at"]))
    for intent, pos in run.positioned_intents():
        c, ch = intent["customer_id"], intent["channel"]
        after = ts(intent["send_after"])
        for e in run.events[math.ceil(pos) :]:
            if e.ts >= after:
                break
            if intent["intent_id"] in cancelled_at and cancelled_at[intent["intent_id"]] < e.ts:
                break
            hit = False
            if e.raw.get("customer_id") == c and not e.raw.get("session_id"):
                hit = e.type in ("erase_requested", "do_not_contact") or (
                    e.type in ("consent_revoked", "complained", "unsubscribed")
                    and e.raw["channel"] == ch
                )
            elif e.type == "purchase" and intent["kind"] not in (
                "browse_abandonment",
                "post_purchase",
            ):
                buyer = verified_claim(e.raw) or (
                    run.world_at(e.index).binding.get(e.raw["session_id"])
                    if not e.raw.get("customer_id")
                    else None
                )
                bought = {i["sku"] for i in e.raw["items"]}
                skus = {i["sku"] for i in intent.get("items") or ()}
                hit = buyer == c and bool(skus) and skus <= bought
            if hit:
                got = cancelled_at.get(intent["intent_id"])
                if got is None or got > e.ts:
                    out.append(
                        f"{_desc(intent)} send_after {intent['send_after']}: not "
                        f"cancelled by {e.type} {e.id} at {e.raw['ts']}"
                    )
                break
    return out


# --- 7. structure ------------------------------------------------------------------------------


def check_structure(run: Run) -> list[str]:
    out = []
    seen: set[str] = set()
    emitted: dict[str, dict[str, Any]] = {}
    cancelled: set[str] = set()
    cancel_decisions = {
        d["intent_id"] for d in run.decisions if d["outcome"] == "cancelled" and d.get("intent_id")
    }
    for d in run.decisions:
        if d.get("outcome") not in ("emitted", "deferred", "suppressed", "cancelled"):
            out.append(f"decision {d.get('decision_id')}: bad outcome {d.get('outcome')}")
        if d.get("outcome") in ("emitted", "deferred") and not d.get("intent_id"):
            out.append(f"decision {d['decision_id']}: {d['outcome']} without intent_id")
        if d.get("outcome") == "suppressed" and not d.get("reason"):
            out.append(f"decision {d['decision_id']}: suppressed without a reason")
    for rec in run.records:
        iid = rec.get("intent_id")
        if rec.get("cancelled"):
            if iid not in emitted:
                out.append(f"cancellation of {iid} that was not emitted before it")
                continue
            if iid in cancelled:
                out.append(f"{iid} cancelled twice")
            cancelled.add(iid)
            intent = emitted[iid]
            out.extend(_check_cancellation_time(run, intent, rec))
            if iid not in cancel_decisions:
                out.append(f"cancellation of {iid} without a cancelled decision")
            for k in ("customer_id", "channel"):
                if k in rec and rec[k] != intent[k]:
                    out.append(f"cancellation of {iid}: {k} {rec[k]} != intent's {intent[k]}")
            continue
        if iid in seen:
            out.append(f"intent_id {iid} emitted twice")
        seen.add(iid)
        emitted[iid] = rec
        d = run.decision_of.get(iid)
        if d is None:
            out.append(f"{_desc(rec)}: no emitted/deferred decision with its intent_id")
            continue
        for k in ("customer_id", "kind", "channel"):
            if d.get(k) != rec.get(k):
                out.append(f"{_desc(rec)}: decision {k} {d.get(k)} != {rec.get(k)}")
        created, after, before = (ts(rec[k]) for k in ("created_at", "send_after", "send_before"))
        if ts(d["at"]) != created:
            out.append(f"{_desc(rec)}: decision at {d['at']} != created_at")
        if not created <= after <= before:
            out.append(f"{_desc(rec)}: not created_at <= send_after <= send_before")
        if before != created + VALIDITY:
            out.append(f"{_desc(rec)}: send_before != created_at + 24h")
        if (d["outcome"] == "deferred") != (after > created):
            out.append(
                f"{_desc(rec)}: outcome {d['outcome']} but send_after - created_at = "
                f"{after - created}s"
            )
        if rec.get("kind") not in KINDS:
            out.append(f"{_desc(rec)}: unknown kind")
        elif rec.get("topic") != TOPIC_OF[rec["kind"]]:
            out.append(f"{_desc(rec)}: topic {rec.get('topic')}")
        elif rec.get("channel") not in CHANNELS_OF[rec["kind"]]:
            out.append(f"{_desc(rec)}: channel not in the trigger's channels")
        if rec.get("kind") in CART_KINDS:
            out.extend(_check_cart_timing(run, rec, d))
    return out


def _check_cancellation_time(
    run: Run, intent: dict[str, Any], rec: dict[str, Any]
) -> list[str]:
    """SPEC §2: a cancellation comes from an event stamped before the intent's send_after,
    and its `at` is never earlier than the intent's created_at (semantics.md: the later of
    the event's ts and created_at)."""
    iid, at = intent["intent_id"], ts(rec["at"])
    created, after = ts(intent["created_at"]), ts(intent["send_after"])
    out = []
    if at < created:
        out.append(f"cancellation of {iid} at {rec['at']} before its created_at")
    by = [
        run.by_id[x]
        for d in run.decisions
        if d["outcome"] == "cancelled" and d.get("intent_id") == iid
        for x in d.get("trigger_event_ids") or ()
        if x in run.by_id
    ]
    if by:
        if not by[-1].ts < after:
            out.append(
                f"cancellation of {iid} by {by[-1].id} at {by[-1].raw['ts']}, not before "
                f"its send_after {intent['send_after']}"
            )
        if at != max(by[-1].ts, created):
            out.append(
                f"cancellation of {iid} at {rec['at']}: not the later of its event's ts "
                f"{by[-1].raw['ts']} and created_at {intent['created_at']}"
            )
    elif at >= after and at != created:  # its event unknown: before send_after, or at it
        # when the intent was not deferred and the event came late
        out.append(
            f"cancellation of {iid} at {rec['at']} is not before its send_after "
            f"{intent['send_after']}"
        )
    return out


def _check_cart_timing(run: Run, intent: dict[str, Any], d: dict[str, Any]) -> list[str]:
    """Cart timers fire after the cart's idle delay; a call only >= 48 h after the cart's
    last activity (SPEC §3, §4.8)."""
    created = ts(intent["created_at"])
    delay = CART_DELAY[intent["kind"]]
    sessions = {e.raw["session_id"] for e in run.storefront_triggers(d)}
    if not sessions:
        return [f"{_desc(intent)}: no cart event among trigger_event_ids"]
    out = []
    shared = {
        e.raw["session_id"]
        for e in run.events
        if e.type in STOREFRONT
        and e.ts < created
        and verified_claim(e.raw) not in (None, intent["customer_id"])
    }
    if sessions & shared:
        return []  # another customer logged in on the same device: who owns the cart is open
    for e in run.events:
        if e.ts >= created:
            break
        if e.type in ACTIVITY and e.raw["session_id"] in sessions and e.ts > created - delay:
            out.append(
                f"{_desc(intent)}: cart activity {e.type} {e.id} at {e.raw['ts']} "
                f"less than {delay // H}h before it"
            )
    return out


# --- triggers fire only as SPEC §3 says ---------------------------------------------------------


def check_triggers(run: Run) -> list[str]:
    out = []
    for intent, _ in run.positioned_intents():
        d = run.decision_of[intent["intent_id"]]
        kind, created = intent["kind"], ts(intent["created_at"])
        items = intent.get("items") or []
        if kind in EVENT_KINDS:
            ev = [run.by_id[x] for x in d.get("trigger_event_ids") or () if x in run.by_id]
            inv = [e for e in ev if e.type in ("stock_level", "price_change")]
            if not inv:
                out.append(f"{_desc(intent)}: no inventory event among its triggers")
                continue
            e = inv[-1]
            sku = e.raw["sku"]
            if e.ts != created:
                out.append(f"{_desc(intent)}: created_at != its event {e.id}'s ts")
            if [i["sku"] for i in items] != [sku]:
                out.append(f"{_desc(intent)}: items {items} are not the event's sku {sku}")
            if kind == "price_drop":
                if e.type != "price_change":
                    out.append(f"{_desc(intent)}: price_drop from {e.type}")
                    continue
                added = [
                    a.raw["price"]
                    for a in run.events[: e.index]
                    if a.type == "cart_add"
                    and a.raw["sku"] == sku
                    and verified_claim(a.raw) in (None, intent["customer_id"])
                ]
                if not any(e.raw["price"] <= 0.9 * p + 1e-9 for p in added):
                    out.append(
                        f"{_desc(intent)}: {e.raw['price']} is not >= 10% below any "
                        f"cart_add price of {sku} ({added})"
                    )
                continue
            before = [
                a.raw["available"]
                for a in run.events[: e.index]
                if a.type == "stock_level" and a.raw["sku"] == sku
            ]
            now = e.raw.get("available")
            ok = (
                bool(before)
                and e.type == "stock_level"
                and (
                    (kind == "low_stock" and before[-1] > 3 >= now)
                    or (kind == "back_in_stock" and before[-1] == 0 < now)
                )
            )
            if not ok:
                out.append(f"{_desc(intent)}: stock {before[-1:]} -> {now} is not a {kind}")
        elif kind == "browse_abandonment":
            views = [run.by_id[x] for x in d.get("trigger_event_ids") or () if x in run.by_id]
            views = [v for v in views if v.type == "product_view"]
            skus = {i["sku"] for i in items}
            products = {v.raw["product_id"] for v in views}
            if len(views) < 3 or len(products) != 1:
                out.append(f"{_desc(intent)}: triggered by {len(views)} views of {products}")
                continue
            if max(v.ts for v in views) + 24 * H != created:
                out.append(f"{_desc(intent)}: not 24h after the last view")
            times = sorted(v.ts for v in views)
            if not any(b - a <= 24 * H for a, b in zip(times, times[2:], strict=False)):
                out.append(f"{_desc(intent)}: no 3 of its views lie within 24h")
            if not skus <= {v.raw["sku"] for v in views}:
                out.append(f"{_desc(intent)}: items {sorted(skus)} were not viewed")
        elif kind == "post_purchase":
            out.extend(_check_post_purchase(run, intent, d))
    out.extend(_check_ladder(run))
    return out


def _buyer(run: Run, e: Event) -> str | None:
    """The verified customer a purchase belongs to: its own verified claim, or the customer
    its session was bound to (an unverified claim never rebinds)."""
    return verified_claim(e.raw) or run.world_at(e.index).binding.get(e.raw["session_id"])


def _check_post_purchase(run: Run, intent: dict[str, Any], d: dict[str, Any]) -> list[str]:
    """SPEC §3: 7 days after a purchase, items from the purchase's lines, a gift purchase
    never arms it. semantics.md: a newer purchase before it fires supersedes it (one
    follow-up, due 7 days after the latest purchase, the lines of all of them, quantities
    added per sku)."""
    c, created = intent["customer_id"], ts(intent["created_at"])
    buys = [e for e in run.storefront_triggers(d) if e.type == "purchase"]
    if not buys:
        return [f"{_desc(intent)}: no purchase among its triggers"]
    out = []
    gifts = [e.id for e in buys if e.raw.get("gift")]
    if gifts:
        out.append(f"{_desc(intent)}: armed by gift purchases {gifts}")
    last = max(e.ts for e in buys)
    if last + POST_PURCHASE_DELAY != created:
        out.append(f"{_desc(intent)}: not 7 days after its latest purchase")
    qty: dict[str, int] = {}
    for e in buys:
        for line in e.raw["items"]:
            qty[line["sku"]] = qty.get(line["sku"], 0) + line["qty"]
    for item in intent.get("items") or ():
        if item["sku"] not in qty:
            out.append(f"{_desc(intent)}: item {item['sku']} was not bought in its purchases")
        elif item["qty"] != qty[item["sku"]]:
            out.append(
                f"{_desc(intent)}: {item['sku']} qty {item['qty']}, bought {qty[item['sku']]}"
            )
    ids = {e.id for e in buys}
    erased_at = run.customer_at(c, run.position(d)).erased_at
    for e in run.events[: math.ceil(run.position(d))]:
        if (
            e.type == "purchase"
            and e.id not in ids
            and not e.raw.get("gift")
            and e.raw.get("items")
            and last < e.ts < created
            and e.index > erased_at
            and _buyer(run, e) == c
        ):
            out.append(
                f"{_desc(intent)}: purchase {e.id} at {e.raw['ts']} came before it fired and "
                f"did not supersede it"
            )
    return out


def _check_ladder(run: Run) -> list[str]:
    """SPEC §3: `assist_offer` fires (emitted, deferred or suppressed: it was evaluated) only
    after an `abandoned_cart` intent for the same cart, on a reminder channel (email), not
    cancelled, went out (send_after) >= 24 h before its due time."""
    out = []
    intent_of = {i["intent_id"]: i for i in run.intents}
    for k, d in enumerate(run.decisions):
        if d["kind"] != "assist_offer" or d["outcome"] == "cancelled":
            continue
        sessions = {e.raw["session_id"] for e in run.storefront_triggers(d)}
        earlier = run.decisions[:k]
        cancelled = {p.get("intent_id") for p in earlier if p["outcome"] == "cancelled"}
        reminders = [
            p
            for p in earlier
            if p["kind"] == "abandoned_cart"
            and p["outcome"] in ("emitted", "deferred")
            and p["customer_id"] == d["customer_id"]
            and p["intent_id"] not in cancelled
            and p["intent_id"] in intent_of
            and sessions & {e.raw["session_id"] for e in run.storefront_triggers(p)}
            and ts(intent_of[p["intent_id"]]["send_after"]) <= ts(d["at"]) - AFTER_REMINDER
        ]
        if not reminders:
            out.append(
                f"assist_offer decision {d['decision_id']} ({d['outcome']}) at {d['at']}: "
                f"no abandoned_cart intent for the cart went out >= 24h before"
            )
        elif not any(p["channel"] in REMINDER_CHANNELS for p in reminders):
            out.append(
                f"assist_offer decision {d['decision_id']} ({d['outcome']}) at {d['at']}: the "
                f"cart was reminded only by {sorted({p['channel'] for p in reminders})}, "
                f"not by {sorted(REMINDER_CHANNELS)}"
            )
    return out


# --- reason codes ------------------------------------------------------------------------------


def check_reasons(run: Run) -> list[str]:
    """SPEC §2: a decision's reason is a listed code, null only for emitted; a deferred one
    names quiet_hours (what moved its send_after). An intent's `reasons` is its kind, then
    the code of every guardrail of §4 in order (it passed them all). Cancellations carry a
    listed code."""
    out = []
    for d in run.decisions:
        reason, outcome = d.get("reason"), d.get("outcome")
        if outcome == "emitted":
            if reason is not None:
                out.append(f"decision {d['decision_id']}: emitted with reason {reason}")
        elif reason not in REASON_CODES:
            out.append(f"decision {d['decision_id']}: {outcome} with reason {reason!r}")
        elif outcome == "deferred" and reason != "quiet_hours":
            out.append(f"decision {d['decision_id']}: deferred with reason {reason}")
    for intent in run.intents:
        want = [intent.get("kind"), *GUARDRAIL_CODES]
        if intent.get("reasons") != want:
            out.append(f"{_desc(intent)}: reasons {intent.get('reasons')} != {want}")
    for c in run.cancellations:
        if c.get("reason") not in REASON_CODES:
            out.append(f"cancellation of {c.get('intent_id')}: reason {c.get('reason')!r}")
    return out


# --- liveness: an idle cart is decided about --------------------------------------------------


def check_cart_liveness(run: Run) -> list[str]:
    """SPEC §3: a non-empty cart with no activity for 4 h fires `abandoned_cart` once per
    idle period, and a pending trigger that ends early is recorded as `cancelled` - so
    every idle period leaves exactly one decision naming its last activity. Checked only
    for carts whose content the spec pins down: sessions with cart_adds (and checkouts)
    only, no removal, purchase or logout, and at most one verified customer, whose
    erasure empties the cart (SPEC §4.13)."""
    out = []
    by_session: dict[str, list[Event]] = {}
    for e in run.events:
        if e.type in STOREFRONT:
            by_session.setdefault(e.raw["session_id"], []).append(e)
    for session, evs in by_session.items():
        if any(e.type in ("cart_remove", "purchase", "logout") for e in evs):
            continue
        claims = {c for e in evs if (c := verified_claim(e.raw))}
        if len(claims) > 1:
            continue
        first_verified = min((e.index for e in evs if verified_claim(e.raw)), default=None)
        erasures = [
            e
            for e in run.events
            if e.type == "erase_requested"
            and e.raw["customer_id"] in claims
            and first_verified is not None
            and e.index > first_verified
        ]
        timeline = sorted([*evs, *erasures], key=lambda e: e.index)
        idle_after: list[Event] = []  # activities that leave a non-empty cart
        non_empty = False
        last_seen = -math.inf
        for e in timeline:
            if e.type != "erase_requested":
                if e.ts - last_seen >= SESSION_TTL:
                    non_empty = False  # an idle session may be forgotten (policy session_ttl)
                last_seen = e.ts
            if e.type == "erase_requested":
                non_empty = False
            elif e.type == "cart_add":
                non_empty = True
                idle_after.append(e)
            elif e.type == "checkout_started" and non_empty:
                idle_after.append(e)
        acts = [e for e in evs if e.type in ("cart_add", "checkout_started")]
        for a in idle_after:
            nxt = next((e for e in acts if e.index > a.index), None)
            if nxt is not None and nxt.ts - a.ts < CART_DELAY["abandoned_cart"]:
                continue
            about = [
                d
                for d in run.decisions
                if d["kind"] == "abandoned_cart" and a.id in (d.get("trigger_event_ids") or ())
            ]
            fired = [d for d in about if d["outcome"] != "cancelled"]
            if not about:
                out.append(
                    f"session {session}: cart idle after {a.type} {a.id} at "
                    f"{a.raw['ts']} but no abandoned_cart decision names it"
                )
            elif len(fired) > 1:
                out.append(
                    f"session {session}: {len(fired)} abandoned_cart decisions for the "
                    f"idle period after {a.id}"
                )
            elif fired and ts(fired[0]["at"]) != a.ts + CART_DELAY["abandoned_cart"]:
                out.append(
                    f"session {session}: abandoned_cart at {fired[0]['at']}, not 4h "
                    f"after {a.id} at {a.raw['ts']}"
                )
    return out


def check_purchase_liveness(run: Run) -> list[str]:
    """SPEC §3: every purchase that is not a gift arms a post_purchase, which is decided
    about 7 days later (emitted, deferred, suppressed) or cancelled before (consent,
    erasure): some post_purchase decision names it, once the input reaches 7 days past
    it. A purchase stamped before an erasure of its buyer that it follows is refused.
    The run is taken to have gone to replay's default end, the last event + 7 days (SPEC §6).
    """
    out: list[str] = []
    if not run.events:
        return out
    end = max(e.ts for e in run.events) + POST_PURCHASE_DELAY
    named = {
        x for d in run.decisions if d["kind"] == "post_purchase"
        for x in d.get("trigger_event_ids") or ()
    }
    for e in run.events:
        if e.type != "purchase" or e.raw.get("gift") or not e.raw.get("items"):
            continue
        if e.ts + POST_PURCHASE_DELAY > end or e.id in named:
            continue
        buyer = _buyer(run, e)
        refused = buyer is not None and any(
            x.type == "erase_requested" and x.raw["customer_id"] == buyer and x.ts >= e.ts
            for x in run.events[: e.index]
        )
        if not refused:
            out.append(f"purchase {e.id} at {e.raw['ts']}: no post_purchase decision names it")
    return out


# --- 8. sensitive categories, gifts, topics ----------------------------------------------------


def categories(run: Run) -> dict[str, set[str]]:
    cats: dict[str, set[str]] = {}
    for e in run.events:
        if "category" in e.raw:
            cats.setdefault(e.raw["sku"], set()).update(e.raw["category"])
    return cats


def check_sensitive(run: Run) -> list[str]:
    out = []
    cats = categories(run)
    for intent, pos in run.positioned_intents():
        prefs = run.customer_at(intent["customer_id"], pos).prefs
        items = intent.get("items") or []
        if not items:
            out.append(f"{_desc(intent)}: no items")
        for item in items:
            sens = cats.get(item["sku"], set()) & SENSITIVE
            if sens and not any(sens <= p.opt_in for p in prefs):
                out.append(
                    f"{_desc(intent)}: item {item['sku']} is sensitive {sorted(sens)} "
                    f"without opt-in (opt-ins {[sorted(p.opt_in) for p in prefs]})"
                )
    return out


def check_gifts_and_topics(run: Run) -> list[str]:
    out = []
    for intent, pos in run.positioned_intents():
        cust = run.customer_at(intent["customer_id"], pos)
        if intent["kind"] in ("browse_abandonment", "post_purchase"):
            # SPEC §4.10: items bought with gift: true never feed browse or recommendations
            gifted = {i["sku"] for i in intent.get("items") or ()} & cust.gift_skus
            if gifted:
                out.append(f"{_desc(intent)}: browse trigger for gifted skus {sorted(gifted)}")
        if all(intent.get("topic") in p.opt_out for p in cust.prefs):
            out.append(f"{_desc(intent)}: topic {intent.get('topic')} opted out")
    return out


CHECKS = {
    "consent": check_consent,
    "verified": check_verified,
    "quiet_hours": check_quiet_hours,
    "caps": check_caps,
    "blocks": check_blocks,
    "bounces": check_bounces,
    "cancellations_complete": check_cancellations_complete,
    "structure": check_structure,
    "triggers": check_triggers,
    "reasons": check_reasons,
    "cart_liveness": check_cart_liveness,
    "purchase_liveness": check_purchase_liveness,
    "sensitive": check_sensitive,
    "gifts_and_topics": check_gifts_and_topics,
}


def check_all(run: Run) -> dict[str, list[str]]:
    return {name: found for name, fn in CHECKS.items() if (found := fn(run))}
