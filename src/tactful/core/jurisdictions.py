"""Calling rules per region (SPEC §4.5): the policy's ``[jurisdictions]``, pure functions.

A customer's ``region`` (ISO 3166-1 alpha-2 ``FR``, or ISO 3166-2 ``US-FL``) selects the
most specific rule the policy holds: the region itself, then its parent subdivisions, then
its country. A rule only ever narrows what the default quiet hours and the customer's own
quiet period allow: it may

- open a channel only inside its ``windows`` (per channel and weekday, local time),
- close whole days for a channel (weekdays, ``weekends``, public ``holidays`` of the
  customer's country or subdivision, from the ``holidays`` library's calendar),
- cap contacts per channel group (and topic) over a rolling window.

When the customer's own time zone is unknown, the zones of the region are used, and a
minute is allowed only if it is allowed in every one of them (fail closed): a region
spanning several zones is contacted only when it is allowed everywhere in it.

Everything here is a function of its arguments (event times, the policy, the region):
the worker and replay decide alike, and holidays depend on the local date only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import TZPATH, ZoneInfo

import holidays
import pycountry

from tactful.core.quiet_hours import _instant, _instants, allowed_minute, next_allowed, zone

# pycountry's databases are untyped: read through these two names only.
_COUNTRIES: Any = pycountry.countries
_SUBDIVISIONS: Any = pycountry.subdivisions

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Day names a rule's `closed` list may hold besides the weekdays.
WEEKENDS, HOLIDAYS = "weekends", "holidays"


@dataclass(frozen=True, slots=True)
class Window:
    """Contact allowed on ``channels`` on ``days`` (0 = Monday) from ``start`` to ``end``
    (minutes of the local day, end excluded)."""

    channels: frozenset[str]
    days: frozenset[int]
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Closed:
    """Whole local days on which ``channels`` are never used."""

    channels: frozenset[str]
    weekdays: frozenset[int]
    holidays: bool


@dataclass(frozen=True, slots=True)
class RegionCap:
    """At most ``max`` intents on ``channels`` (the group, counted together) per rolling
    ``window``, of the same topic only when ``same_topic``."""

    channels: frozenset[str]
    window: float
    max: int
    same_topic: bool


@dataclass(frozen=True, slots=True)
class Jurisdiction:
    region: str
    windows: tuple[Window, ...] = ()
    closed: tuple[Closed, ...] = ()
    caps: tuple[RegionCap, ...] = ()

    def narrows(self, channel: str) -> bool:
        """Whether this rule limits when ``channel`` may be used."""
        return any(channel in w.channels for w in self.windows) or any(
            channel in c.channels for c in self.closed
        )


@dataclass(frozen=True, slots=True)
class Jurisdictions:
    rules: Mapping[str, Jurisdiction] = field(default_factory=dict)
    # Zones of a region for customers whose own zone is unknown; a region not listed
    # takes its country's entry, else every zone of its country in the tz database.
    zones: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def longest_window(self) -> float:
        return max((cap.window for r in self.rules.values() for cap in r.caps), default=0.0)


NO_JURISDICTIONS = Jurisdictions()


# ------------------------------------------------------------------------- regions


@lru_cache(maxsize=4096)
def is_region(code: str) -> bool:
    """An assigned ISO 3166-1 alpha-2 country or ISO 3166-2 subdivision code, as ISO
    writes it (upper case)."""
    if code != code.upper() or not code[:2].isalpha():
        return False
    if len(code) == 2:
        return _COUNTRIES.get(alpha_2=code) is not None
    return code[2:3] == "-" and _SUBDIVISIONS.get(code=code) is not None


@lru_cache(maxsize=4096)
def lineage(region: str) -> tuple[str, ...]:
    """``region``, then its parent subdivisions, then its country: most specific first."""
    chain = [region]
    seen = {region}
    code = region
    while "-" in code:
        sub = _SUBDIVISIONS.get(code=code)
        parent = getattr(sub, "parent_code", None) if sub is not None else None
        if not parent or parent in seen:
            break
        chain.append(parent)
        seen.add(parent)
        code = parent
    if region[:2] not in seen:
        chain.append(region[:2])
    return tuple(chain)


def rule_for(region: str | None, rules: Mapping[str, Jurisdiction]) -> Jurisdiction | None:
    """The most specific rule for ``region`` (``US-FL`` before ``US``), or None."""
    if region is None or not rules:
        return None
    for code in lineage(region):
        found = rules.get(code)
        if found is not None:
            return found
    return None


@lru_cache(maxsize=1)
def _zone_table() -> Mapping[str, tuple[str, ...]]:
    """Country code -> its zones, from the tz database's zone.tab (the one zoneinfo reads)."""
    text = None
    for base in TZPATH:
        path = Path(base) / "zone.tab"
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            break
    if text is None:  # no system database: zoneinfo falls back to the tzdata package
        from importlib import resources

        text = (resources.files("tzdata") / "zoneinfo" / "zone.tab").read_text(encoding="utf-8")
    table: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) >= 3:
            table.setdefault(parts[0], []).append(parts[2])
    return {country: tuple(zones) for country, zones in table.items()}


def region_zones(region: str, listed: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
    """The zones a customer of ``region`` may be in: the policy's ``region_timezones`` for
    the region or an enclosing one, else every zone of its country (empty if none)."""
    for code in lineage(region):
        found = listed.get(code)
        if found:
            return found
    return _zone_table().get(region[:2], ())


def contact_zones(
    timezone: str | None, region: str | None, j: Jurisdictions, default_timezone: str
) -> tuple[str, ...]:
    """The zones whose local time decides (SPEC §4.5): the customer's own, else those of
    the region (all of them), else the policy's default."""
    if timezone:
        return (timezone,)
    if region:
        zones = region_zones(region, j.zones)
        if zones:
            return zones
    return (default_timezone,)


# ------------------------------------------------------------------------ holidays


@lru_cache(maxsize=256)
def _holidays(region: str, year: int) -> frozenset[date]:
    """Public holidays of ``year`` where a customer of ``region`` lives: the calendar of the
    most specific subdivision the library keeps (``FR-67`` takes Alsace's, ``6AE``), else
    the country's."""
    country = region[:2]
    try:
        known = set(holidays.country_holidays(country).subdivisions)
    except NotImplementedError:
        return frozenset()
    subdiv = next(
        (code[3:] for code in lineage(region) if "-" in code and code[3:] in known), None
    )
    return frozenset(holidays.country_holidays(country, subdiv=subdiv, years=year))


def is_holiday(region: str, day: date) -> bool:
    return day in _holidays(region, day.year)


def has_calendar(country: str) -> bool:
    try:
        holidays.country_holidays(country)
    except NotImplementedError:
        return False
    return True


# ---------------------------------------------------------------------- the window


@dataclass(frozen=True, slots=True)
class Hours:
    """What decides when one channel may be used for one customer."""

    channel: str
    base: tuple[int, int] | None  # the policy's quiet-hours window, None: not held to it
    quiet: tuple[int, int] | None  # the customer's own no-contact period
    rule: Jurisdiction | None
    region: str | None

    def boundaries(self) -> list[int]:
        """Local minutes at which being allowed can change (midnight: the day changes)."""
        found = {0}
        if self.base is not None:
            found.update(self.base)
            if self.quiet is not None:
                found.update(self.quiet)
        if self.rule is not None:
            for w in self.rule.windows:
                if self.channel in w.channels:
                    found.update((w.start, w.end % (24 * 60)))
        return sorted(found)

    def open_at(self, local: datetime) -> bool:
        minute = local.hour * 60 + local.minute
        if self.base is not None and not allowed_minute(minute, *self.base, self.quiet):
            return False
        rule = self.rule
        if rule is None:
            return True
        weekday = local.weekday()
        for closed in rule.closed:
            if self.channel not in closed.channels:
                continue
            if weekday in closed.weekdays:
                return False
            if closed.holidays and self.region is not None and is_holiday(
                self.region, local.date()
            ):
                return False
        windows = [w for w in rule.windows if self.channel in w.channels]
        return not windows or any(
            weekday in w.days and w.start <= minute < w.end for w in windows
        )


def allowed_at(t: float, zones: Sequence[str], hours: Hours) -> bool:
    """Whether contact is allowed at instant ``t`` in every one of ``zones``."""
    return all(hours.open_at(datetime.fromtimestamp(t, zone(z))) for z in zones)


def next_open(t: float, until: float, zones: Sequence[str], hours: Hours) -> float | None:
    """The earliest instant in [t, until] at which ``hours`` allow contact in every zone;
    None when there is none (the intent could only be stale)."""
    if allowed_at(t, zones, hours):
        return t
    tzs: list[ZoneInfo] = [zone(z) for z in zones]
    minutes = hours.boundaries()
    # Being allowed can only change at a boundary minute of some zone's local day. Local
    # days are taken one at a time in every zone; a candidate earlier than the start of
    # the next local day in every zone can no longer be preceded by a later batch's.
    days = [datetime.fromtimestamp(t, tz).date() for tz in tzs]
    last = max(datetime.fromtimestamp(until, tz).date() for tz in tzs)
    pending: list[float] = []
    while min(days) <= last:
        for i, tz in enumerate(tzs):
            for minute in minutes:
                pending.extend(c for c in _instants(days[i], minute, tz) if t < c <= until)
            days[i] += timedelta(days=1)
        settled = min(_instant(d, 0, tz) for d, tz in zip(days, tzs, strict=True))
        pending.sort()
        ready = [c for c in pending if c < settled]
        pending = pending[len(ready):]
        for instant in ready:
            if allowed_at(instant, zones, hours):
                return instant
    for instant in pending:
        if allowed_at(instant, zones, hours):
            return instant
    return None


class CustomerLike(Protocol):
    @property
    def timezone(self) -> str | None: ...
    @property
    def region(self) -> str | None: ...
    @property
    def quiet(self) -> tuple[int, int] | None: ...


class PolicyLike(Protocol):
    @property
    def default_timezone(self) -> str: ...
    @property
    def quiet_from(self) -> int: ...
    @property
    def quiet_until(self) -> int: ...
    @property
    def quiet_channels(self) -> frozenset[str]: ...
    @property
    def jurisdictions(self) -> Jurisdictions: ...


def next_contact(
    policy: PolicyLike, customer: CustomerLike, channel: str, t: float, until: float
) -> float | None:
    """Guardrail 5 with §4.5's jurisdictions: the earliest instant >= ``t`` at which
    ``channel`` may reach ``customer`` (``t`` itself when allowed). None: not before
    ``until`` (the trigger's validity), so the intent could only be stale."""
    held = channel in policy.quiet_channels
    rule = rule_for(customer.region, policy.jurisdictions.rules)
    narrowed = rule is not None and rule.narrows(channel)
    if not held and not narrowed:
        return t
    zones = contact_zones(
        customer.timezone, customer.region, policy.jurisdictions, policy.default_timezone
    )
    if not narrowed and len(zones) == 1:  # the daily window alone, in one zone
        return next_allowed(t, zone(zones[0]), policy.quiet_from, policy.quiet_until,
                            customer.quiet)
    hours = Hours(
        channel,
        (policy.quiet_from, policy.quiet_until) if held else None,
        customer.quiet if held else None,
        rule if narrowed else None,
        customer.region,
    )
    return next_open(t, until, zones, hours)


# --------------------------------------------------------------------------- caps


class SentLike(Protocol):
    @property
    def channel(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def created_at(self) -> float: ...
    @property
    def cancelled(self) -> bool: ...


def cap_reached(
    rule: Jurisdiction | None,
    channel: str,
    topic: str,
    sent: Iterable[SentLike],
    now: float,
    topic_of: Mapping[str, str],
) -> bool:
    """Whether a cap of ``rule`` on ``channel``'s group is used up at ``now``: emitted, not
    cancelled intents on the group's channels (of ``topic`` when the cap is per topic)
    created in ``(now - window, now]``."""
    if rule is None:
        return False
    sent = list(sent)
    return any(channel in cap.channels and cap_used(cap, sent, now, topic_of, topic) >= cap.max
               for cap in rule.caps)


def cap_used(cap: RegionCap, sent: Iterable[SentLike], now: float,
             topic_of: Mapping[str, str], topic: str | None = None) -> int:
    """How many emitted, not cancelled intents on ``cap``'s channels, created in
    ``(now - window, now]``, count against it (of ``topic`` when it is per topic)."""
    since = now - cap.window
    return sum(
        1 for s in sent
        if not s.cancelled and s.channel in cap.channels and since < s.created_at <= now
        and (not cap.same_topic or topic_of.get(s.kind) == topic)
    )


# ------------------------------------------------------------------- the policy file


class Reader(Protocol):
    """What reading a table needs from the policy reader (core/policy.py)."""

    def fail(self, key: str, reason: str) -> Exception: ...
    def duration(self, table: dict[str, Any], key: str, full: str, lo: float = 0.0,
                 default: str | None = None) -> float: ...
    def number(self, table: dict[str, Any], key: str, full: str, lo: float,
               hi: float) -> float: ...
    def channels(self, table: dict[str, Any], key: str, full: str,
                 empty_ok: bool) -> tuple[str, ...]: ...
    def hhmm(self, table: dict[str, Any], key: str, full: str) -> int: ...


def parse_jurisdictions(doc: dict[str, Any], reader: Reader) -> Jurisdictions:
    """``[jurisdictions.REGION]`` tables and ``[region_timezones]`` of a policy document."""
    rules_doc = doc.get("jurisdictions", {})
    if not isinstance(rules_doc, dict):
        raise reader.fail("jurisdictions", "must be a table of regions")
    rules: dict[str, Jurisdiction] = {}
    for region, body in rules_doc.items():
        full = f"jurisdictions.{region}"
        if not is_region(region):
            raise reader.fail(full, f"{region!r} is not an ISO 3166-1 alpha-2 or ISO 3166-2 code")
        if not isinstance(body, dict):
            raise reader.fail(full, "must be a table")
        unknown = sorted(set(body) - {"windows", "closed", "caps"})
        if unknown:
            raise reader.fail(f"{full}.{unknown[0]}", "unknown key")
        rules[region] = Jurisdiction(
            region,
            tuple(_windows(reader, body, full)),
            tuple(_closed(reader, body, full, region)),
            tuple(_caps(reader, body, full)),
        )
    zones_doc = doc.get("region_timezones", {})
    if not isinstance(zones_doc, dict):
        raise reader.fail("region_timezones", "must be a table of regions")
    zones: dict[str, tuple[str, ...]] = {}
    for region, names in zones_doc.items():
        full = f"region_timezones.{region}"
        if not is_region(region):
            raise reader.fail(full, f"{region!r} is not an ISO 3166-1 alpha-2 or ISO 3166-2 code")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise reader.fail(full, "must be a non-empty list of IANA time zone names")
        for name in names:
            try:
                zone(name)
            except (ValueError, OSError, KeyError):
                raise reader.fail(full, f"unknown time zone {name!r}") from None
        zones[region] = tuple(names)
    return Jurisdictions(rules, zones)


def _list(reader: Reader, body: dict[str, Any], key: str, full: str) -> list[dict[str, Any]]:
    value = body.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise reader.fail(f"{full}.{key}", "must be an array of tables")
    return value


def _only(reader: Reader, table: dict[str, Any], full: str, allowed: set[str]) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise reader.fail(f"{full}.{unknown[0]}", "unknown key")


def _days(reader: Reader, table: dict[str, Any], full: str, extra: tuple[str, ...]) -> list[str]:
    value = table.get("days", list(WEEKDAYS))
    names = (*WEEKDAYS, *extra)
    if not isinstance(value, list) or not value or not all(v in names for v in value):
        raise reader.fail(full, f"days must be a non-empty list of {', '.join(names)}")
    return list(value)


def _windows(reader: Reader, body: dict[str, Any], full: str) -> list[Window]:
    out = []
    for i, w in enumerate(_list(reader, body, "windows", full)):
        key = f"{full}.windows[{i}]"
        _only(reader, w, key, {"channels", "days", "from", "until"})
        channels = reader.channels(w, "channels", f"{key}.channels", empty_ok=False)
        days = _days(reader, w, f"{key}.days", ())
        start = reader.hhmm(w, "from", f"{key}.from")
        end = 24 * 60 if w.get("until") == "24:00" else reader.hhmm(w, "until", f"{key}.until")
        if start >= end:
            raise reader.fail(f"{key}.until", "must be later than from")
        out.append(Window(frozenset(channels), frozenset(WEEKDAYS.index(d) for d in days),
                          start, end))
    return out


def _closed(reader: Reader, body: dict[str, Any], full: str, region: str) -> list[Closed]:
    out = []
    for i, c in enumerate(_list(reader, body, "closed", full)):
        key = f"{full}.closed[{i}]"
        _only(reader, c, key, {"channels", "days"})
        channels = reader.channels(c, "channels", f"{key}.channels", empty_ok=False)
        if "days" not in c:
            raise reader.fail(f"{key}.days", "missing (weekdays, weekends, holidays)")
        days = _days(reader, c, f"{key}.days", (WEEKENDS, HOLIDAYS))
        if HOLIDAYS in days and not has_calendar(region[:2]):
            raise reader.fail(f"{key}.days", f"no public holiday calendar for {region[:2]}")
        weekdays = {WEEKDAYS.index(d) for d in days if d in WEEKDAYS}
        if WEEKENDS in days:
            weekdays |= {5, 6}
        out.append(Closed(frozenset(channels), frozenset(weekdays), HOLIDAYS in days))
    return out


def _caps(reader: Reader, body: dict[str, Any], full: str) -> list[RegionCap]:
    out = []
    for i, c in enumerate(_list(reader, body, "caps", full)):
        key = f"{full}.caps[{i}]"
        _only(reader, c, key, {"channels", "window", "max", "same_topic"})
        channels = reader.channels(c, "channels", f"{key}.channels", empty_ok=False)
        window = reader.duration(c, "window", f"{key}.window", lo=60.0)
        cap_max = reader.number(c, "max", f"{key}.max", 0, 1_000_000)
        if not cap_max.is_integer():
            raise reader.fail(f"{key}.max", f"must be a whole number, got {cap_max:g}")
        same_topic = c.get("same_topic", False)
        if not isinstance(same_topic, bool):
            raise reader.fail(f"{key}.same_topic", "must be true or false")
        out.append(RegionCap(frozenset(channels), window, int(cap_max), same_topic))
    return out
