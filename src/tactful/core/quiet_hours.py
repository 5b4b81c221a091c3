"""Quiet hours in the customer's own time zone (SPEC §4.5), DST-correct.

The policy opens a daily window (08:00–21:00 by default); the customer's own
``quiet_hours`` is a no-contact period that may wrap midnight and only ever
narrows that window. Contact is allowed again at the period's end minute.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAY = 24 * 60


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    """A ZoneInfo by IANA name; ``ZoneInfoNotFoundError``/``ValueError`` when unknown."""
    return ZoneInfo(name)


def is_zone(name: str) -> bool:
    try:
        zone(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def hhmm_minutes(value: str) -> int:
    return int(value[:2]) * 60 + int(value[3:5])


def allowed_minute(
    minute: int, allowed_from: int, allowed_until: int, quiet: tuple[int, int] | None
) -> bool:
    """Whether contact is allowed during local minute-of-day ``minute``."""
    if not allowed_from <= minute < allowed_until:
        return False
    if quiet is None:
        return True
    start, end = quiet
    if start == end:  # an empty period
        return True
    if start < end:
        return not start <= minute < end
    return end <= minute < start  # wraps midnight


def next_allowed(
    t: float,
    tz: ZoneInfo,
    allowed_from: int,
    allowed_until: int,
    quiet: tuple[int, int] | None,
) -> float | None:
    """The earliest instant ≥ ``t`` at which contact is allowed; None if never.

    ``t`` and the result are POSIX seconds. When ``t`` itself is allowed it is
    returned unchanged; otherwise the result is the start of a local minute.
    """
    local = datetime.fromtimestamp(t, tz)
    if allowed_minute(local.hour * 60 + local.minute, allowed_from, allowed_until, quiet):
        return t
    # Contact can only become allowed at the window's opening or at the end of
    # the customer's own quiet period; try those wall-clock minutes in order.
    openings = sorted({allowed_from} | ({quiet[1]} if quiet is not None else set()))
    day = local.date()
    for offset in range(3):
        d = day + timedelta(days=offset)
        candidates = sorted(i for minute in openings for i in _instants(d, minute, tz))
        for instant in candidates:
            if instant <= t:
                continue
            here = datetime.fromtimestamp(instant, tz)
            if allowed_minute(here.hour * 60 + here.minute, allowed_from, allowed_until, quiet):
                return instant
    return None


def _instants(d: date, minute: int, tz: ZoneInfo) -> list[float]:
    """Every instant a wall-clock minute occurs on ``d``: two on a DST fall-back night."""
    first = _instant(d, minute, tz)
    wall = datetime(d.year, d.month, d.day, minute // 60, minute % 60, tzinfo=tz, fold=1)
    second = wall.timestamp()
    back = datetime.fromtimestamp(second, tz).replace(tzinfo=None)
    if second != first and back == wall.replace(tzinfo=None, fold=0):
        return [first, second]
    return [first]


def _instant(d: date, minute: int, tz: ZoneInfo) -> float:
    """The first instant whose local wall-clock time is ``d`` at ``minute`` or later.

    A wall time inside a DST gap does not exist; the answer is then the end of
    the gap. An ambiguous wall time (DST ending) takes its first occurrence.
    """
    wall = datetime(d.year, d.month, d.day, minute // 60, minute % 60, tzinfo=tz)
    first = wall.timestamp()
    back = datetime.fromtimestamp(first, tz)
    if back.replace(tzinfo=None) == wall.replace(tzinfo=None):
        return first
    # In a gap: walk from the earlier reading (fold=1) to the first minute at or past `wall`.
    probe = wall.replace(fold=1).timestamp()
    naive = wall.replace(tzinfo=None)
    while datetime.fromtimestamp(probe, tz).replace(tzinfo=None) < naive:
        probe += 60
    # `probe` now sits past the jump; step back to the exact transition instant.
    while datetime.fromtimestamp(probe - 60, tz).replace(tzinfo=None) >= naive:
        probe -= 60
    return _floor_minute_utc(probe)


def _floor_minute_utc(t: float) -> float:
    dt = datetime.fromtimestamp(t, UTC).replace(second=0, microsecond=0)
    return dt.timestamp()
