"""Calling rules per region (SPEC §4.5) at every edge, through the guardrails.

Every expected instant below is worked out by hand from the shipped policy's comments
(TCPA, the Florida act, the French décret) and a calendar: 2026-07-14 is a Tuesday,
Easter Monday 2026 is 6 April, the US leaves DST on 1 November 2026 and France on
25 October 2026.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from importlib import resources
from zoneinfo import ZoneInfo

import pytest

from tactful.core.errors import PolicyError
from tactful.core.guardrails import Check, Firing, judge
from tactful.core.jurisdictions import (
    contact_zones,
    is_holiday,
    is_region,
    lineage,
    region_zones,
    rule_for,
)
from tactful.core.policy import Policy, load_policy, parse_policy
from tactful.core.state import Consent, CustomerState, Sent

H = 3600.0
D = 24 * H
POLICY = load_policy()
DEFAULT_TOML = (resources.files("tactful") / "policy" / "default.toml").read_text()
PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def at(tz: ZoneInfo, y: int, mo: int, d: int, h: int, mi: int = 0) -> float:
    return datetime(y, mo, d, h, mi, tzinfo=tz).timestamp()


def utc(y: int, mo: int, d: int, h: int, mi: int = 0) -> float:
    return datetime(y, mo, d, h, mi, tzinfo=UTC).timestamp()


def shopper(region: str | None, timezone: str | None, *channels: str,
            quiet: tuple[int, int] | None = None, sent: list[Sent] | None = None
            ) -> CustomerState:
    grants = {c: Consent(True, utc(2026, 1, 1, 0), "signup") for c in channels}
    return CustomerState("cust-1", consents=grants, timezone=timezone, region=region,
                         quiet=quiet, sent=sent or [])


def judged(cust: CustomerState, channel: str, t: float, kind: str = "assist_offer",
           policy: Policy = POLICY) -> tuple[str | None, float]:
    """(reason or None, send_after) of ``channel`` for a trigger due at ``t``."""
    f = Firing(kind, "sess-1", [("sku-1", 1, 600.0, ["home"])], ["ev-1"], t, t - 48 * H,
               ("sess-1",))
    c = Check(policy, cust, f, t, list(f.items))
    c.channel = channel
    c.send_after = t
    return judge(c), c.send_after


def variant(old: str, new: str) -> Policy:
    assert old in DEFAULT_TOML
    return parse_policy(DEFAULT_TOML.replace(old, new, 1).encode())


def sent(t: float, channel: str, kind: str = "abandoned_cart", n: int = 0) -> Sent:
    return Sent(f"int-{n}-{t}", kind, channel, t, t, f"sess-{n}", ["sku-0"])


# ------------------------------------------------------------ Florida: 08:00-20:00


def test_miami_sms_at_19_59_goes_out_at_once() -> None:
    t = at(NEW_YORK, 2026, 6, 10, 19, 59)
    assert judged(shopper("US-FL", "America/New_York", "sms"), "sms", t, "abandoned_cart") \
        == (None, t)


def test_miami_sms_at_20_00_waits_for_08_00_the_next_morning() -> None:
    t = at(NEW_YORK, 2026, 6, 10, 20, 0)
    reason, after = judged(shopper("US-FL", "America/New_York", "sms"), "sms", t,
                           "abandoned_cart")
    assert (reason, after) == (None, at(NEW_YORK, 2026, 6, 11, 8, 0))


def test_the_same_hour_is_allowed_in_new_york_state_under_tcpa() -> None:
    # US-NY has no rule of its own: the US one (TCPA, until 21:00) applies.
    t = at(NEW_YORK, 2026, 6, 10, 20, 30)
    assert judged(shopper("US-NY", "America/New_York", "sms"), "sms", t, "abandoned_cart") \
        == (None, t)
    assert rule_for("US-NY", POLICY.jurisdictions.rules) is POLICY.jurisdictions.rules["US"]


def test_florida_leaves_push_and_email_to_the_default_window() -> None:
    t = at(NEW_YORK, 2026, 6, 10, 20, 30)
    cust = shopper("US-FL", "America/New_York", "push", "email")
    assert judged(cust, "push", t, "abandoned_cart") == (None, t)
    assert judged(cust, "email", t, "abandoned_cart") == (None, t)


# ------------------------------------------------------------- Paris: the décret


def test_paris_friday_19_59_is_a_call_at_once() -> None:
    t = at(PARIS, 2026, 6, 12, 19, 59)  # a Friday
    assert judged(shopper("FR", "Europe/Paris", "phone"), "phone", t) == (None, t)


def test_paris_friday_20_00_waits_for_monday_10_00_and_is_stale() -> None:
    t = at(PARIS, 2026, 6, 12, 20, 0)
    c = shopper("FR", "Europe/Paris", "phone")
    reason, after = judged(c, "phone", t)
    assert after == at(PARIS, 2026, 6, 15, 10, 0)  # Monday 10:00, 62 h later
    assert reason == "stale"  # SPEC §4.5: beyond the trigger's 24 h validity


def test_paris_monday_10_00_is_not_stale_from_sunday_afternoon() -> None:
    t = at(PARIS, 2026, 6, 14, 15, 0)  # Sunday 15:00: Monday 10:00 is 19 h away
    assert judged(shopper("FR", "Europe/Paris", "phone"), "phone", t) \
        == (None, at(PARIS, 2026, 6, 15, 10, 0))


@pytest.mark.parametrize(("hour", "minute", "expect"), [
    (9, 59, (10, 0)), (10, 0, (10, 0)), (12, 59, (12, 59)), (13, 0, (14, 0)),
    (13, 59, (14, 0)), (14, 0, (14, 0)),
])
def test_paris_lunch_break_and_morning_edges(hour: int, minute: int,
                                             expect: tuple[int, int]) -> None:
    t = at(PARIS, 2026, 6, 10, hour, minute)  # a Wednesday
    assert judged(shopper("FR", "Europe/Paris", "phone"), "phone", t) \
        == (None, at(PARIS, 2026, 6, 10, *expect))


def test_no_call_on_14_july() -> None:
    t = at(PARIS, 2026, 7, 14, 11, 0)  # Tuesday, Fête nationale
    assert judged(shopper("FR", "Europe/Paris", "phone"), "phone", t) \
        == (None, at(PARIS, 2026, 7, 15, 10, 0))
    # Monday 13 July at 20:00 skips the whole holiday: 38 h, so stale.
    reason, after = judged(shopper("FR", "Europe/Paris", "phone"), "phone",
                           at(PARIS, 2026, 7, 13, 20, 0))
    assert (reason, after) == ("stale", at(PARIS, 2026, 7, 15, 10, 0))


def test_easter_monday_is_closed_and_the_weekend_before_it() -> None:
    assert is_holiday("FR", date(2026, 4, 6))
    t = at(PARIS, 2026, 4, 6, 11, 0)
    assert judged(shopper("FR", "Europe/Paris", "phone"), "phone", t) \
        == (None, at(PARIS, 2026, 4, 7, 10, 0))
    reason, after = judged(shopper("FR", "Europe/Paris", "phone"), "phone",
                           at(PARIS, 2026, 4, 4, 11, 0))  # Saturday
    assert (reason, after) == ("stale", at(PARIS, 2026, 4, 7, 10, 0))


def test_a_subdivision_has_its_own_holidays() -> None:
    # Good Friday (3 April 2026) is a public holiday in Moselle and Alsace, not in Paris.
    friday = at(PARIS, 2026, 4, 3, 11, 0)
    assert judged(shopper("FR-75C", "Europe/Paris", "phone"), "phone", friday) \
        == (None, friday)
    for region in ("FR-57", "FR-67"):
        reason, after = judged(shopper(region, "Europe/Paris", "phone"), "phone", friday)
        assert (reason, after) == ("stale", at(PARIS, 2026, 4, 7, 10, 0))  # Easter Monday too


def test_french_rules_concern_phone_only() -> None:
    t = at(PARIS, 2026, 7, 14, 9, 0)  # a holiday, 09:00: sms goes out by the default window
    assert judged(shopper("FR", "Europe/Paris", "sms"), "sms", t, "abandoned_cart") == (None, t)


# ---------------------------------------------------------------------------- DST


def test_friday_evening_before_the_french_clock_change_to_monday() -> None:
    # 23 Oct 2026 20:00 CEST (18:00Z); France leaves DST on Sunday 25 Oct: Monday 10:00 CET
    # is 09:00Z, not 08:00Z.
    reason, after = judged(shopper("FR", "Europe/Paris", "phone"), "phone",
                           at(PARIS, 2026, 10, 23, 20, 0))
    assert after == utc(2026, 10, 26, 9, 0)
    assert reason == "stale"


def test_miami_on_the_night_the_us_leaves_dst() -> None:
    # Saturday 31 Oct 2026 20:00 EDT (1 Nov 00:00Z): 08:00 EST on Sunday 1 Nov is 13:00Z.
    reason, after = judged(shopper("US-FL", "America/New_York", "sms"), "sms",
                           utc(2026, 11, 1, 0, 0), "abandoned_cart")
    assert (reason, after) == (None, utc(2026, 11, 1, 13, 0))


def test_miami_on_the_morning_the_us_enters_dst() -> None:
    # Sunday 8 March 2026: 02:00 EST jumps to 03:00 EDT; 08:00 EDT is 12:00Z.
    reason, after = judged(shopper("US-FL", "America/New_York", "sms"), "sms",
                           utc(2026, 3, 8, 6, 30), "abandoned_cart")
    assert (reason, after) == (None, utc(2026, 3, 8, 12, 0))


# -------------------------------------------------------------- fail closed by zone


def test_a_region_without_the_customers_zone_takes_all_its_zones() -> None:
    zones = contact_zones(None, "US", POLICY.jurisdictions, POLICY.default_timezone)
    assert "America/New_York" in zones and "Pacific/Honolulu" in zones
    assert contact_zones("Europe/Paris", "US", POLICY.jurisdictions, "America/New_York") \
        == ("Europe/Paris",)
    assert contact_zones(None, None, POLICY.jurisdictions, "America/New_York") \
        == ("America/New_York",)
    assert region_zones("US-FL", POLICY.jurisdictions.zones) \
        == ("America/New_York", "America/Chicago")
    assert region_zones("FR-75C", POLICY.jurisdictions.zones) == ("Europe/Paris",)


def test_florida_without_a_zone_must_be_allowed_in_both_of_its_zones() -> None:
    cust = shopper("US-FL", None, "sms")
    # 07:30 CDT / 08:30 EDT (12:30Z): too early in the panhandle; 08:00 CDT is 13:00Z.
    assert judged(cust, "sms", utc(2026, 6, 10, 12, 30), "abandoned_cart") \
        == (None, utc(2026, 6, 10, 13, 0))
    # 19:30 CDT / 20:30 EDT (00:30Z): too late in Miami; the next 08:00 CDT.
    assert judged(cust, "sms", utc(2026, 6, 11, 0, 30), "abandoned_cart") \
        == (None, utc(2026, 6, 11, 13, 0))
    t = utc(2026, 6, 10, 23, 59)  # 19:59 EDT, 18:59 CDT
    assert judged(cust, "sms", t, "abandoned_cart") == (None, t)


def test_the_united_states_without_a_zone_fail_closed_from_hawaii_to_maine() -> None:
    cust = shopper("US", None, "sms")
    # 12:00 EDT (16:00Z) is 06:00 in Honolulu: the first minute allowed everywhere is
    # 08:00 HST = 18:00Z; it closes at 21:00 EDT = 01:00Z.
    assert judged(cust, "sms", utc(2026, 6, 10, 16, 0), "abandoned_cart") \
        == (None, utc(2026, 6, 10, 18, 0))
    t = utc(2026, 6, 11, 0, 59)
    assert judged(cust, "sms", t, "abandoned_cart") == (None, t)
    assert judged(cust, "sms", utc(2026, 6, 11, 1, 0), "abandoned_cart") \
        == (None, utc(2026, 6, 11, 18, 0))


def test_a_region_without_a_rule_still_lends_its_zone() -> None:
    # SPEC §4.5: unknown zone, known region: the region's zone (Berlin), not New York.
    cust = shopper("DE", None, "sms")
    assert judged(cust, "sms", utc(2026, 6, 10, 5, 0), "abandoned_cart") \
        == (None, utc(2026, 6, 10, 6, 0))  # 08:00 CEST


# --------------------------------------------------------------- only ever narrow


def test_a_wider_rule_never_widens_the_default_window() -> None:
    wide = variant('[jurisdictions.US]\nwindows = [{ channels = ["sms", "phone"], '
                   'from = "08:00", until = "21:00" }]',
                   '[jurisdictions.US]\nwindows = [{ channels = ["sms", "phone"], '
                   'from = "06:00", until = "23:00" }]')
    cust = shopper("US-NY", "America/New_York", "sms")
    assert judged(cust, "sms", at(NEW_YORK, 2026, 6, 10, 7, 0), "abandoned_cart", wide) \
        == (None, at(NEW_YORK, 2026, 6, 10, 8, 0))
    assert judged(cust, "sms", at(NEW_YORK, 2026, 6, 10, 22, 0), "abandoned_cart", wide) \
        == (None, at(NEW_YORK, 2026, 6, 11, 8, 0))


def test_the_customers_own_quiet_hours_still_apply_inside_the_rule() -> None:
    # Quiet 09:00-11:30 in Paris: a Wednesday call at 10:00 waits for 11:30.
    cust = shopper("FR", "Europe/Paris", "phone", quiet=(9 * 60, 11 * 60 + 30))
    assert judged(cust, "phone", at(PARIS, 2026, 6, 10, 10, 0)) \
        == (None, at(PARIS, 2026, 6, 10, 11, 30))
    # Quiet 12:00-15:00: the morning window ends at 13:00, the customer's period at 15:00.
    cust = shopper("FR", "Europe/Paris", "phone", quiet=(12 * 60, 15 * 60))
    assert judged(cust, "phone", at(PARIS, 2026, 6, 10, 12, 0)) \
        == (None, at(PARIS, 2026, 6, 10, 15, 0))


# --------------------------------------------------------------------------- caps


# The default caps (1 per 16 h across channels...) would hide the region's: left out here.
NO_CAPS = replace(POLICY, frequency_caps=())


def test_florida_three_per_day_on_the_same_topic_sms_and_phone_together() -> None:
    t = at(NEW_YORK, 2026, 6, 10, 12, 0)
    history = [sent(t - 20 * H, "sms", n=11), sent(t - 10 * H, "phone", "assist_offer", n=12),
               sent(t - 1 * H, "sms", n=13)]
    cust = shopper("US-FL", "America/New_York", "sms", "push", sent=history)
    assert judged(cust, "sms", t, "abandoned_cart", NO_CAPS)[0] == "frequency_cap"
    assert judged(cust, "push", t, "abandoned_cart", NO_CAPS) == (None, t)  # not in the group
    # Another topic (stock_alerts) is another count.
    assert judged(cust, "sms", t, "low_stock", NO_CAPS) == (None, t)
    # 24 h is rolling: the oldest one leaves the window a minute later.
    later = t + 4 * H
    assert judged(cust, "sms", later, "abandoned_cart", NO_CAPS) == (None, later)
    # Cancelled intents are not counted.
    history[2].cancelled = True
    assert judged(cust, "sms", t, "abandoned_cart", NO_CAPS) == (None, t)
    # Outside Florida the rule is not there.
    other = shopper("US-NY", "America/New_York", "sms", sent=list(history))
    history[2].cancelled = False
    assert judged(other, "sms", t, "abandoned_cart", NO_CAPS) == (None, t)


def test_france_four_calls_per_30_days() -> None:
    t = at(PARIS, 2026, 6, 10, 11, 0)
    calls = [sent(t - k * 6 * D, "phone", "assist_offer", n=k) for k in (1, 2, 3, 4)]
    cust = shopper("FR", "Europe/Paris", "phone", sent=calls)
    assert judged(cust, "phone", t, policy=NO_CAPS)[0] == "frequency_cap"
    calls[3].created_at = t - 30 * D  # exactly 30 days ago: outside (now - 30 d, now]
    assert judged(cust, "phone", t, policy=NO_CAPS) == (None, t)


def test_the_jurisdiction_cap_counts_by_created_at_like_the_default_caps() -> None:
    assert POLICY.longest_memory >= 30 * D  # the French cap's window is remembered


# ------------------------------------------------------------- regions and policy


def test_most_specific_region_wins() -> None:
    rules = POLICY.jurisdictions.rules
    assert rule_for("US-FL", rules) is rules["US-FL"]
    assert rule_for("US-CA", rules) is rules["US"]
    assert rule_for("FR-75C", rules) is rules["FR"]
    assert rule_for("DE", rules) is None
    assert rule_for(None, rules) is None
    assert lineage("FR-67") == ("FR-67", "FR-6AE", "FR-GES", "FR")


@pytest.mark.parametrize("code", ["FR", "US", "US-FL", "FR-75C", "GB-ENG"])
def test_assigned_codes_are_regions(code: str) -> None:
    assert is_region(code)


@pytest.mark.parametrize("code", ["ZZ", "us", "us-fl", "US-ZZ", "US-", "USA", "FR75", "F1"])
def test_other_codes_are_not(code: str) -> None:
    assert not is_region(code)


@pytest.mark.parametrize(("old", "new", "key"), [
    ("[jurisdictions.FR]", "[jurisdictions.ZZ]", "jurisdictions.ZZ"),
    ('from = "10:00", until = "13:00"', 'from = "13:00", until = "10:00"',
     "jurisdictions.FR.windows[0].until"),
    ('days = ["weekends", "holidays"]', 'days = ["weekend"]', "jurisdictions.FR.closed[0].days"),
    ('caps = [{ channels = ["phone"], window = "30d", max = 4 }]',
     'caps = [{ channels = ["fax"], window = "30d", max = 4 }]',
     "jurisdictions.FR.caps[0].channels"),
    ('caps = [{ channels = ["phone"], window = "30d", max = 4 }]',
     'caps = [{ channels = ["phone"], window = "30d", max = 4, per = "topic" }]',
     "jurisdictions.FR.caps[0].per"),
    ('US-OK = ["America/Chicago"]', 'US-OK = ["America/Tulsa"]', "region_timezones.US-OK"),
    ("[jurisdictions.FR]\n", "[jurisdictions.FR]\nhours = 1\n", "jurisdictions.FR.hours"),
])
def test_a_wrong_rule_is_refused_naming_its_key(old: str, new: str, key: str) -> None:
    with pytest.raises(PolicyError) as err:
        variant(old, new)
    assert err.value.key == key


def test_a_policy_without_jurisdictions_has_none() -> None:
    start = DEFAULT_TOML.index("# Calling rules per region")
    end = DEFAULT_TOML.index("# What `tactful explain`")
    plain = parse_policy((DEFAULT_TOML[:start] + DEFAULT_TOML[end:]).encode())
    assert plain.jurisdictions.rules == {}
    cust = shopper("US-FL", "America/New_York", "sms")
    t = at(NEW_YORK, 2026, 6, 10, 20, 30)
    assert judged(cust, "sms", t, "abandoned_cart", plain) == (None, t)


def test_the_shipped_rules_name_their_laws() -> None:
    for law in ("TCPA", "Florida Telephone Solicitation Act", "Oklahoma Telephone",
                "Maryland Stop the Spam Calls Act", "Décret n° 2022-1313"):
        assert law in DEFAULT_TOML
    rules = POLICY.jurisdictions.rules
    assert {"US", "US-FL", "US-OK", "US-MD", "FR"} <= set(rules)
