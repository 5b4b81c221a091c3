"""Quiet hours (SPEC §4.5): the policy window, the customer's own period, DST and odd offsets.

Every expected instant is written out by hand in UTC, from the zone's rules,
not computed with the code under test.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from tactful.core.quiet_hours import allowed_minute, hhmm_minutes, is_zone, next_allowed

NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
KOLKATA = ZoneInfo("Asia/Kolkata")
CHATHAM = ZoneInfo("Pacific/Chatham")

# SPEC §4.5: sms, push and phone only 08:00–21:00 local.
FROM, UNTIL = 8 * 60, 21 * 60


def hm(text: str) -> int:
    h, m = text.split(":")
    return int(h) * 60 + int(m)


def utc(text: str) -> float:
    """'2026-03-08T12:00:00Z' → POSIX seconds."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def wall(
    tz: ZoneInfo, y: int, mo: int, d: int, h: int, mi: int, s: int = 0, fold: int = 0
) -> float:
    return datetime(y, mo, d, h, mi, s, tzinfo=tz, fold=fold).timestamp()


def show(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------- the window


@pytest.mark.parametrize(
    ("minute", "allowed"),
    [("00:00", False), ("07:59", False), ("08:00", True), ("12:00", True),
     ("20:59", True), ("21:00", False), ("23:59", False)],
)
def test_allowed_minute_at_window_edges(minute: str, allowed: bool) -> None:
    assert allowed_minute(hm(minute), FROM, UNTIL, None) is allowed


def test_next_allowed_0759_waits_for_0800_same_day() -> None:
    t = wall(NY, 2026, 6, 10, 7, 59)
    assert show(next_allowed(t, NY, FROM, UNTIL, None)) == "2026-06-10T12:00:00Z"  # 08:00 EDT


def test_next_allowed_0759_59_still_waits() -> None:
    t = wall(NY, 2026, 6, 10, 7, 59, 59)
    assert show(next_allowed(t, NY, FROM, UNTIL, None)) == "2026-06-10T12:00:00Z"


def test_next_allowed_0800_is_unchanged() -> None:
    t = wall(NY, 2026, 6, 10, 8, 0)
    assert next_allowed(t, NY, FROM, UNTIL, None) == t


def test_next_allowed_2059_is_unchanged_even_late_in_the_minute() -> None:
    for s in (0, 30, 59):
        t = wall(NY, 2026, 6, 10, 20, 59, s)
        assert next_allowed(t, NY, FROM, UNTIL, None) == t


def test_next_allowed_2100_waits_for_next_morning() -> None:
    t = wall(NY, 2026, 6, 10, 21, 0)
    assert show(next_allowed(t, NY, FROM, UNTIL, None)) == "2026-06-11T12:00:00Z"


def test_next_allowed_just_after_midnight_waits_for_same_day_0800() -> None:
    t = wall(NY, 2026, 6, 11, 0, 1)
    assert show(next_allowed(t, NY, FROM, UNTIL, None)) == "2026-06-11T12:00:00Z"


def test_next_allowed_3am_is_deferred_to_0800() -> None:
    # The "message at 3 a.m." of the spec's introduction.
    t = wall(NY, 2026, 6, 11, 3, 0)
    assert show(next_allowed(t, NY, FROM, UNTIL, None)) == "2026-06-11T12:00:00Z"


def test_deferred_result_is_start_of_a_minute() -> None:
    t = wall(NY, 2026, 6, 10, 22, 17, 42) + 0.5
    got = next_allowed(t, NY, FROM, UNTIL, None)
    assert got is not None and got % 60 == 0


# -------------------------------------------------- the customer's own period


def test_customer_period_wrapping_midnight_end_minute_allowed() -> None:
    quiet = (hm("20:00"), hm("09:00"))
    assert not allowed_minute(hm("08:59"), FROM, UNTIL, quiet)
    assert allowed_minute(hm("09:00"), FROM, UNTIL, quiet)  # contact allowed again at its end
    assert allowed_minute(hm("19:59"), FROM, UNTIL, quiet)
    assert not allowed_minute(hm("20:00"), FROM, UNTIL, quiet)
    assert not allowed_minute(hm("23:00"), FROM, UNTIL, quiet)
    assert not allowed_minute(hm("02:00"), FROM, UNTIL, quiet)


def test_customer_period_wrapping_midnight_next_allowed() -> None:
    quiet = (hm("20:00"), hm("09:00"))
    t = wall(NY, 2026, 6, 10, 8, 30)  # window is open, the customer's period is not over
    assert show(next_allowed(t, NY, FROM, UNTIL, quiet)) == "2026-06-10T13:00:00Z"  # 09:00 EDT
    t = wall(NY, 2026, 6, 10, 20, 0)
    assert show(next_allowed(t, NY, FROM, UNTIL, quiet)) == "2026-06-11T13:00:00Z"
    t = wall(NY, 2026, 6, 10, 9, 0)
    assert next_allowed(t, NY, FROM, UNTIL, quiet) == t


def test_example_period_2130_to_0830() -> None:
    # examples/events.jsonl: quiet_hours 21:30–08:30 in America/Chicago.
    chicago = ZoneInfo("America/Chicago")
    quiet = (hm("21:30"), hm("08:30"))
    assert not allowed_minute(hm("08:29"), FROM, UNTIL, quiet)
    assert allowed_minute(hm("08:30"), FROM, UNTIL, quiet)
    t = wall(chicago, 2026, 5, 4, 2, 0)
    assert show(next_allowed(t, chicago, FROM, UNTIL, quiet)) == "2026-05-04T13:30:00Z"  # 08:30 CDT


def test_customer_period_not_wrapping() -> None:
    quiet = (hm("12:00"), hm("13:00"))
    assert allowed_minute(hm("11:59"), FROM, UNTIL, quiet)
    assert not allowed_minute(hm("12:00"), FROM, UNTIL, quiet)
    assert not allowed_minute(hm("12:59"), FROM, UNTIL, quiet)
    assert allowed_minute(hm("13:00"), FROM, UNTIL, quiet)
    t = wall(NY, 2026, 6, 10, 12, 15)
    assert show(next_allowed(t, NY, FROM, UNTIL, quiet)) == "2026-06-10T17:00:00Z"  # 13:00 EDT


@pytest.mark.parametrize(
    "period",
    [("20:00", "09:00"), ("22:00", "07:00"), ("12:00", "13:00"), ("21:30", "06:00"),
     ("00:00", "23:59"), ("07:00", "08:30"), ("20:30", "21:30"), ("05:00", "05:00")],
)
def test_customer_period_narrows_never_widens(period: tuple[str, str]) -> None:
    quiet = (hm(period[0]), hm(period[1]))
    for minute in range(24 * 60):
        if allowed_minute(minute, FROM, UNTIL, quiet):
            assert allowed_minute(minute, FROM, UNTIL, None), (period, minute)


def test_period_ending_before_the_window_opens_does_not_open_it_early() -> None:
    quiet = (hm("22:00"), hm("07:00"))
    t = wall(NY, 2026, 6, 10, 7, 30)
    # 08:00, not 07:00
    assert show(next_allowed(t, NY, FROM, UNTIL, quiet)) == "2026-06-10T12:00:00Z"


def test_period_starting_after_the_window_closes_does_not_extend_it() -> None:
    quiet = (hm("22:00"), hm("07:00"))
    assert not allowed_minute(hm("21:30"), FROM, UNTIL, quiet)
    t = wall(NY, 2026, 6, 10, 21, 30)
    assert show(next_allowed(t, NY, FROM, UNTIL, quiet)) == "2026-06-11T12:00:00Z"


def test_period_covering_the_whole_window_never_opens() -> None:
    quiet = (hm("07:00"), hm("22:00"))
    t = wall(NY, 2026, 6, 10, 12, 0)
    assert next_allowed(t, NY, FROM, UNTIL, quiet) is None


# ------------------------------------------------------------------- DST


def test_ny_spring_forward_0130_est_defers_to_0800_edt() -> None:
    t = utc("2026-03-08T06:30:00Z")  # 01:30 EST, before the 02:00 → 03:00 jump
    assert show(next_allowed(t, NY, FROM, UNTIL, None)) == "2026-03-08T12:00:00Z"  # not 13:00Z


def test_ny_spring_forward_trigger_at_nonexistent_0230() -> None:
    # 02:30 does not exist that night; Python reads it as 02:30 EST = 03:30 EDT.
    t = wall(NY, 2026, 3, 8, 2, 30)
    assert show(t) == "2026-03-08T07:30:00Z"
    assert show(next_allowed(t, NY, FROM, UNTIL, None)) == "2026-03-08T12:00:00Z"


def test_ny_spring_forward_window_opening_inside_the_gap_opens_at_gap_end() -> None:
    # A policy opening at 02:30: that night 02:30 does not exist; the first allowed
    # instant is 03:00 EDT, the end of the gap.
    t = utc("2026-03-08T06:00:00Z")  # 01:00 EST
    assert show(next_allowed(t, NY, hm("02:30"), UNTIL, None)) == "2026-03-08T07:00:00Z"


def test_ny_spring_forward_customer_period_ending_inside_the_gap() -> None:
    quiet = (hm("23:00"), hm("02:30"))
    t = utc("2026-03-08T06:00:00Z")  # 01:00 EST
    got = next_allowed(t, NY, 0, 24 * 60 - 1, quiet)
    assert show(got) == "2026-03-08T07:00:00Z"  # 03:00 EDT


def test_ny_fall_back_first_0130_defers_to_0800_est() -> None:
    t = utc("2026-11-01T05:30:00Z")  # 01:30 EDT, the first of the two
    assert show(next_allowed(t, NY, FROM, UNTIL, None)) == "2026-11-01T13:00:00Z"  # not 12:00Z


def test_ny_fall_back_second_0130_defers_to_0800_est() -> None:
    t = utc("2026-11-01T06:30:00Z")  # 01:30 EST, the second of the two
    assert show(next_allowed(t, NY, FROM, UNTIL, None)) == "2026-11-01T13:00:00Z"


def test_ny_fall_back_ambiguous_opening_first_occurrence() -> None:
    # A policy opening at 01:30: before the first 01:30, that one is next.
    t = utc("2026-11-01T05:00:00Z")  # 01:00 EDT
    assert show(next_allowed(t, NY, hm("01:30"), UNTIL, None)) == "2026-11-01T05:30:00Z"


def test_ny_fall_back_ambiguous_opening_second_occurrence() -> None:
    # Between the two 01:30s the wall clock reads 01:00–01:29 again (EST); the window
    # opens when it next reads 01:30, i.e. 01:30 EST = 06:30Z — not a day later.
    t = utc("2026-11-01T06:10:00Z")  # 01:10 EST, after the first 01:30 EDT (05:30Z)
    assert not allowed_minute(hm("01:10"), hm("01:30"), UNTIL, None)
    assert show(next_allowed(t, NY, hm("01:30"), UNTIL, None)) == "2026-11-01T06:30:00Z"


def test_berlin_spring_forward_night_defers_to_0800_cest() -> None:
    t = utc("2026-03-29T00:30:00Z")  # 01:30 CET
    assert show(next_allowed(t, BERLIN, FROM, UNTIL, None)) == "2026-03-29T06:00:00Z"


def test_berlin_spring_forward_trigger_at_nonexistent_0230() -> None:
    t = wall(BERLIN, 2026, 3, 29, 2, 30)  # read as 02:30 CET = 03:30 CEST
    assert show(t) == "2026-03-29T01:30:00Z"
    assert show(next_allowed(t, BERLIN, FROM, UNTIL, None)) == "2026-03-29T06:00:00Z"


def test_berlin_spring_forward_opening_inside_the_gap() -> None:
    t = utc("2026-03-29T00:30:00Z")  # 01:30 CET
    assert show(next_allowed(t, BERLIN, hm("02:15"), UNTIL, None)) == "2026-03-29T01:00:00Z"


@pytest.mark.parametrize("t", ["2026-10-25T00:30:00Z", "2026-10-25T01:30:00Z"])
def test_berlin_fall_back_both_0230s_defer_to_0800_cet(t: str) -> None:
    # 00:30Z = 02:30 CEST, 01:30Z = 02:30 CET
    assert show(next_allowed(utc(t), BERLIN, FROM, UNTIL, None)) == "2026-10-25T07:00:00Z"


def test_berlin_fall_back_evening_close_uses_the_new_offset() -> None:
    t = utc("2026-10-25T19:59:00Z")  # 20:59 CET: allowed
    assert next_allowed(t, BERLIN, FROM, UNTIL, None) == t
    t = utc("2026-10-25T20:00:00Z")  # 21:00 CET: closed
    assert show(next_allowed(t, BERLIN, FROM, UNTIL, None)) == "2026-10-26T07:00:00Z"


# ------------------------------------------------------ zones far from UTC


def test_kolkata_half_hour_offset() -> None:
    t = utc("2026-06-10T02:00:00Z")  # 07:30 IST
    assert show(next_allowed(t, KOLKATA, FROM, UNTIL, None)) == "2026-06-10T02:30:00Z"
    t = utc("2026-06-10T15:29:00Z")  # 20:59 IST
    assert next_allowed(t, KOLKATA, FROM, UNTIL, None) == t
    t = utc("2026-06-10T15:30:00Z")  # 21:00 IST
    assert show(next_allowed(t, KOLKATA, FROM, UNTIL, None)) == "2026-06-11T02:30:00Z"


def test_chatham_quarter_hour_offset_standard_time() -> None:
    # June: Pacific/Chatham is +12:45; local date is a day ahead of UTC in the evening.
    t = utc("2026-06-14T18:14:00Z")  # 2026-06-15 06:59 +12:45
    assert show(next_allowed(t, CHATHAM, FROM, UNTIL, None)) == "2026-06-14T19:15:00Z"
    t = utc("2026-06-15T08:15:00Z")  # 21:00 local
    assert show(next_allowed(t, CHATHAM, FROM, UNTIL, None)) == "2026-06-15T19:15:00Z"


def test_chatham_quarter_hour_offset_daylight_time() -> None:
    # January: +13:45.
    t = utc("2026-01-14T17:00:00Z")  # 2026-01-15 06:45 +13:45
    assert show(next_allowed(t, CHATHAM, FROM, UNTIL, None)) == "2026-01-14T18:15:00Z"


def test_chatham_spring_forward_night() -> None:
    # 2026-09-27 02:45 +12:45 → 03:45 +13:45 (14:00Z). 01:00 local (12:15Z) → 08:00 +13:45.
    t = utc("2026-09-26T12:15:00Z")
    assert show(next_allowed(t, CHATHAM, FROM, UNTIL, None)) == "2026-09-26T18:15:00Z"


# ------------------------------------------------------------------- helpers


def test_hhmm_minutes() -> None:
    assert hhmm_minutes("00:00") == 0
    assert hhmm_minutes("08:30") == 510
    assert hhmm_minutes("23:59") == 1439


def test_is_zone() -> None:
    assert is_zone("America/New_York")
    assert is_zone("Pacific/Chatham")
    assert not is_zone("Mars/Olympus_Mons")
    assert not is_zone("../../etc/passwd")
    assert not is_zone("")
