"""A customer's timeline for support staff (SPEC §7, explain): what tactful knows of the
customer, what it decided and why, and what is still to come.

Built from the customer's state alone, by one function, so the worker's
``GET /customers/{id}/decisions`` and ``tactful explain --events`` (through replay)
answer alike. The state keeps the latest inputs and decisions, as many as the policy's
``[explain]`` table says; the decisions topic keeps every decision in full.
"""

from __future__ import annotations

from datetime import datetime

from msgspec import Struct

from tactful.core.engine import Engine
from tactful.core.guardrails import cap_usage
from tactful.core.jurisdictions import cap_used, rule_for
from tactful.core.outputs import iso
from tactful.core.state import CustomerState


class Input(Struct, frozen=True, omit_defaults=True):
    at: str
    type: str
    detail: str | None = None  # the channel or sku it was about


class DecisionLine(Struct, frozen=True, omit_defaults=True):
    at: str
    kind: str
    outcome: str
    channel: str | None = None
    reason: str | None = None
    intent_id: str | None = None


class PendingTrigger(Struct, frozen=True):
    kind: str
    due: str
    target: str  # the cart's session id, or the product id of the views


class ConsentLine(Struct, frozen=True, omit_defaults=True):
    granted: bool
    at: str
    source: str
    expires_at: str | None = None


class CapLine(Struct, frozen=True):
    channel: str | None  # None: every channel
    window_seconds: float
    max: int
    used: int


class RegionCapLine(Struct, frozen=True):
    """A cap of the customer's region (SPEC §4.5): intents on ``channels`` counted
    together, of ``topic`` only when the cap counts per topic."""

    region: str  # the rule's region (the most specific one for the customer's)
    channels: list[str]
    window_seconds: float
    max: int
    topic: str | None  # None: every topic counts
    used: int


class SentLine(Struct, frozen=True):
    intent_id: str
    kind: str
    channel: str
    created_at: str
    send_after: str
    cancelled: bool


class Preferences(Struct, frozen=True, omit_defaults=True):
    timezone: str | None = None
    quiet_hours: tuple[str, str] | None = None
    opted_out: list[str] = []
    opted_in: list[str] = []
    region: str | None = None  # where the shopper lives (the calling rules of SPEC §4.5)


class Timeline(Struct, frozen=True):
    customer_id: str
    as_of: str  # the clock the answer was computed at (cap usage depends on it)
    known: bool  # False: tactful holds nothing for this customer (never seen, or erased)
    inputs: list[Input] = []
    decisions: list[DecisionLine] = []
    pending: list[PendingTrigger] = []
    consent: dict[str, ConsentLine] = {}
    do_not_contact: dict[str, str] = {}  # channel -> since when a sender said stop
    bounced: dict[str, str] = {}  # channel -> until when a bounce holds it back
    preferences: Preferences | None = None
    caps: list[CapLine] = []
    region_caps: list[RegionCapLine] = []
    sent: list[SentLine] = []  # intents still counted by a cap, cooldown or the ladder


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def timeline(engine: Engine, customer_id: str, st: CustomerState | None, now: float) -> Timeline:
    """The customer's timeline at ``now``; ``st`` is the customer's state, if any."""
    if st is None:
        return Timeline(customer_id, iso(now), False)
    quiet = (_hhmm(st.quiet[0]), _hhmm(st.quiet[1])) if st.quiet is not None else None
    return Timeline(
        customer_id=customer_id,
        as_of=iso(now),
        known=True,
        inputs=[Input(iso(n.at), n.type, n.detail) for n in st.inputs],
        decisions=[DecisionLine(iso(d.at), d.kind, d.outcome, d.channel, d.reason, d.intent_id)
                   for d in st.decisions],
        pending=[PendingTrigger(kind, iso(due), target)
                 for due, kind, target in engine.pending_triggers(st)],
        consent={
            channel: ConsentLine(c.granted, iso(c.at), c.source,
                                 iso(c.expires_at) if c.expires_at is not None else None)
            for channel, c in sorted(st.consents.items())
        },
        do_not_contact={channel: iso(at) for channel, at in sorted(st.blocked.items())},
        bounced={channel: iso(until) for channel, (_, until) in sorted(st.bounced.items())
                 if until > now},
        preferences=Preferences(st.timezone, quiet, sorted(st.opt_out), sorted(st.opt_in),
                                st.region),
        caps=[CapLine(cap.channel, cap.window, cap.max, cap_usage(cap, st.sent, now))
              for cap in engine.policy.frequency_caps],
        region_caps=_region_caps(engine, st, now),
        sent=[SentLine(s.intent_id, s.kind, s.channel, iso(s.created_at), iso(s.send_after),
                       s.cancelled) for s in st.sent],
    )


def _region_caps(engine: Engine, st: CustomerState, now: float) -> list[RegionCapLine]:
    """The caps of the customer's region at ``now``; a cap per topic, once per topic
    of a trigger that may use one of its channels."""
    policy = engine.policy
    rule = rule_for(st.region, policy.jurisdictions.rules)
    if rule is None:
        return []
    topic_of = {kind: trigger.topic for kind, trigger in policy.triggers.items()}
    lines = []
    for cap in rule.caps:
        channels = sorted(cap.channels)
        topics: list[str | None] = [None]
        if cap.same_topic:
            topics = [*sorted({t.topic for t in policy.triggers.values()
                               if cap.channels & set(t.channels)})]
        lines += [RegionCapLine(rule.region, channels, cap.window, cap.max, topic,
                                cap_used(cap, st.sent, now, topic_of, topic))
                  for topic in topics]
    return lines


def render(t: Timeline) -> str:
    """The timeline as text for a terminal: newest last, one line per entry."""
    lines = [f"customer {t.customer_id}, as of {t.as_of}"]
    if not t.known:
        lines.append("  tactful holds nothing for this customer (never seen, or erased)")
        return "\n".join(lines) + "\n"
    lines.append("consent:")
    for channel, c in t.consent.items():
        state = "granted" if c.granted else "revoked"
        until = f", expires {c.expires_at}" if c.expires_at else ""
        lines.append(f"  {channel:<6} {state} {c.at} ({c.source}{until})")
    if not t.consent:
        lines.append("  none given")
    for channel, at in t.do_not_contact.items():
        lines.append(f"  {channel:<6} do not contact since {at}")
    for channel, until in t.bounced.items():
        lines.append(f"  {channel:<6} bounced, not used until {until}")
    if t.preferences is not None:
        p = t.preferences
        parts = []
        if p.timezone:
            parts.append(f"time zone {p.timezone}")
        if p.region:
            parts.append(f"region {p.region}")
        if p.quiet_hours:
            parts.append(f"quiet {p.quiet_hours[0]}-{p.quiet_hours[1]}")
        if p.opted_out:
            parts.append(f"opted out of {', '.join(p.opted_out)}")
        if p.opted_in:
            parts.append(f"opted in to {', '.join(p.opted_in)}")
        if parts:
            lines.append("preferences: " + "; ".join(parts))
    # Inputs and decisions in one timeline, in time order (inputs first at equal times:
    # a decision follows what caused it).
    entries: list[tuple[datetime, int, str]] = []
    for i in t.inputs:
        about = f" {i.detail}" if i.detail else ""
        entries.append((_when(i.at), 0, f"  {i.at}  input     {i.type}{about}"))
    for d in t.decisions:
        what = d.outcome + (f" ({d.reason})" if d.reason else "")
        on = f" on {d.channel}" if d.channel else ""
        intent = f" -> {d.intent_id}" if d.intent_id else ""
        entries.append((_when(d.at), 1, f"  {d.at}  decision  {d.kind}{on}: {what}{intent}"))
    lines.append("timeline (latest kept):")
    lines.extend(text for _, _, text in sorted(entries, key=lambda e: (e[0], e[1])))
    if not entries:
        lines.append("  nothing kept")
    lines.append("pending triggers:")
    lines.extend(f"  {p.due}  {p.kind} ({p.target})" for p in t.pending)
    if not t.pending:
        lines.append("  none")
    lines.append("frequency caps:")
    for cap in t.caps:
        scope = cap.channel or "all channels"
        lines.append(f"  {cap.used}/{cap.max} in {_duration(cap.window_seconds)} ({scope})")
    if t.region_caps:
        lines.append(f"region caps ({t.region_caps[0].region}):")
    for line in t.region_caps:
        about = "" if line.topic is None else f", topic {line.topic}"
        lines.append(f"  {line.used}/{line.max} in {_duration(line.window_seconds)}"
                     f" ({', '.join(line.channels)}{about})")
    return "\n".join(lines) + "\n"


def _when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
