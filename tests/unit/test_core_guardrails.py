"""Each guardrail of SPEC §4 in isolation, on a hand-built ``Check``."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import resources

import pytest

from tactful.core import guardrails as g
from tactful.core.guardrails import GUARDRAILS, Check, Firing, judge
from tactful.core.outputs import GUARDRAIL_CODES
from tactful.core.policy import Policy, load_policy, parse_policy
from tactful.core.state import Consent, CustomerState, Sent

H = 3600.0
D = 24 * H
POLICY = load_policy()
DEFAULT_TOML = (resources.files("tactful") / "policy" / "default.toml").read_text()
# 2026-06-10 14:00 in New York (EDT, -04:00): inside the 08:00–21:00 window.
NOON = datetime(2026, 6, 10, 18, 0, tzinfo=UTC).timestamp()
NIGHT = datetime(2026, 6, 10, 7, 0, tzinfo=UTC).timestamp()  # 03:00 EDT


def firing(
    kind: str = "abandoned_cart",
    at: float = NOON,
    *,
    target: str = "sess-1",
    activity_at: float | None = None,
    items: list[tuple[str, int, float, list[str]]] | None = None,
    sessions: tuple[str, ...] = ("sess-1",),
    still_wanted: bool = True,
) -> Firing:
    items = items if items is not None else [("sku-1", 1, 20.0, ["home"])]
    return Firing(
        kind, target, items, ["ev-1"], at, at - 4 * H if activity_at is None else activity_at,
        sessions, still_wanted,
    )


def customer(**consents: Consent) -> CustomerState:
    return CustomerState("cust-1", consents=dict(consents))


def grant(at: float = NOON - 30 * D, expires_at: float | None = None) -> Consent:
    return Consent(True, at, "signup", expires_at)


def check(
    f: Firing | None = None,
    cust: CustomerState | None = None,
    channel: str = "email",
    now: float | None = None,
    policy: Policy = POLICY,
) -> Check:
    f = f or firing()
    cust = cust if cust is not None else customer(email=grant())
    c = Check(policy, cust, f, f.created_at if now is None else now,
              [i for i in f.items if "health" not in i[3]])
    c.channel = channel
    c.send_after = max(f.created_at, c.now)
    return c


def sent(
    created_at: float, *, kind: str = "abandoned_cart", channel: str = "email",
    target: str = "sess-0", cancelled: bool = False,
) -> Sent:
    return Sent(f"int-{created_at}-{kind}-{channel}", kind, channel, created_at, created_at,
                target, ["sku-0"], cancelled)


def variant(old: str, new: str) -> Policy:
    assert old in DEFAULT_TOML
    return parse_policy(DEFAULT_TOML.replace(old, new, 1).encode())


# ------------------------------------------------------------------ order


# SPEC §2: the codes an intent's ``reasons`` lists after its kind, in §4's order. The
# contract names verified_identity, consent, topic_preferences, quiet_hours, frequency_cap,
# cooldown and min_lag; the others follow §4's headings.
SPEC_CODES = [
    "verified_identity",   # 1
    "consent",             # 2
    "topic_preferences",   # 3
    "do_not_contact",      # 4
    "quiet_hours",         # 5
    "frequency_cap",       # 6
    "cooldown",            # 7
    "min_lag",             # 8
    "conversion_exit",     # 9
    "gift_exclusion",      # 10
    "sensitive_category",  # 11
    "staleness",           # 12
    "erasure",             # 13
]


def test_guardrails_are_in_spec_section_4_order() -> None:
    assert [code for code, _ in GUARDRAILS] == SPEC_CODES
    assert [f for _, f in GUARDRAILS] == [
        g.verified_identity, g.consent, g.topic_preferences, g.do_not_contact, g.quiet_hours,
        g.frequency_caps, g.cooldown, g.min_lag, g.conversion, g.gifts, g.sensitive_category,
        g.staleness, g.erasure,
    ]


def test_guardrail_codes_are_the_documented_list() -> None:
    # The schema's list (outputs.GUARDRAIL_CODES) is the one the guardrails emit.
    assert list(GUARDRAIL_CODES) == SPEC_CODES


def test_judge_returns_first_failure_in_order() -> None:
    cust = customer()  # no consent at all
    cust.opt_out = ["cart_reminders"]
    cust.blocked = {"email": NOON - H}
    c = check(cust=cust)
    assert judge(c) == "no_consent"
    assert c.passed == ["verified_identity"]


def test_judge_passes_and_lists_every_guardrail_by_its_code() -> None:
    c = check()
    assert judge(c) is None
    assert c.passed == SPEC_CODES
    # a code, never the name of the function that checks it
    assert "frequency_caps" not in c.passed and "conversion" not in c.passed


def test_judge_lists_the_codes_passed_before_a_later_failure() -> None:
    cust = customer(email=grant())
    # the same cart reminded an hour ago: the 16 h cap (6) fails before the cooldown (7)
    cust.sent = [sent(NOON - H, target="sess-1")]
    c = check(cust=cust)
    assert judge(c) == "frequency_cap"
    assert c.passed == SPEC_CODES[:5]


# ---------------------------------------------------------- 1 identity


def test_verified_identity_passes_for_customer_state() -> None:
    assert g.verified_identity(check()) is None


# ------------------------------------------------------------ 2 consent


def test_consent_missing() -> None:
    assert g.consent(check(cust=customer())) == "no_consent"


def test_consent_for_another_channel_only() -> None:
    assert g.consent(check(cust=customer(sms=grant()), channel="email")) == "no_consent"


def test_consent_revoked() -> None:
    cust = customer(email=Consent(False, NOON - H, "preference_center"))
    assert g.consent(check(cust=cust)) == "no_consent"


def test_consent_without_expiry_passes() -> None:
    assert g.consent(check()) is None


def test_consent_expiring_exactly_at_decision_time_is_expired() -> None:
    # semantics.md: expires_at must be later than the decision time.
    cust = customer(email=grant(expires_at=NOON))
    assert g.consent(check(cust=cust)) == "consent_expired"


def test_consent_expiring_one_second_after_decision_passes() -> None:
    cust = customer(email=grant(expires_at=NOON + 1))
    assert g.consent(check(cust=cust)) is None


def test_consent_expired_before_decision() -> None:
    cust = customer(email=grant(expires_at=NOON - D))
    assert g.consent(check(cust=cust)) == "consent_expired"


def test_consent_is_judged_at_decision_time_not_creation() -> None:
    # A late decision (clock later than due): consent valid at due but gone at `now`.
    cust = customer(email=grant(expires_at=NOON + H))
    assert g.consent(check(cust=cust, now=NOON + 2 * H)) == "consent_expired"


# ------------------------------------------------------- 3 topic prefs


def test_topic_opt_out() -> None:
    cust = customer(email=grant())
    cust.opt_out = ["cart_reminders"]
    assert g.topic_preferences(check(cust=cust)) == "topic_opt_out"


def test_other_topic_opted_out_passes() -> None:
    cust = customer(email=grant())
    cust.opt_out = ["deals", "recommendations"]
    assert g.topic_preferences(check(cust=cust)) is None


def test_topic_of_the_kind_is_used() -> None:
    cust = customer(email=grant())
    cust.opt_out = ["deals"]
    assert g.topic_preferences(check(firing("price_drop", target="sku-1"), cust)) == "topic_opt_out"


# ------------------------------------------------------ 4 do not contact


def test_blocked_channel() -> None:
    cust = customer(email=grant(), sms=grant())
    cust.blocked = {"email": NOON - H}
    assert g.do_not_contact(check(cust=cust, channel="email")) == "do_not_contact"
    assert g.do_not_contact(check(cust=cust, channel="sms")) is None


# ------------------------------------------------------------ 5 quiet


def test_quiet_hours_leave_email_alone_at_night() -> None:
    c = check(firing(at=NIGHT), channel="email")
    assert g.quiet_hours(c) is None
    assert c.send_after == NIGHT


@pytest.mark.parametrize("channel", ["sms", "push", "phone"])
def test_quiet_hours_defer_sms_push_phone_at_night(channel: str) -> None:
    c = check(firing(at=NIGHT), customer(**{channel: grant()}), channel=channel)
    assert g.quiet_hours(c) is None  # never a failure
    assert c.send_after == datetime(2026, 6, 10, 12, 0, tzinfo=UTC).timestamp()  # 08:00 EDT


def test_quiet_hours_in_the_window_change_nothing() -> None:
    c = check(firing(at=NOON), customer(push=grant()), channel="push")
    g.quiet_hours(c)
    assert c.send_after == NOON


def test_quiet_hours_use_the_customers_zone() -> None:
    cust = customer(push=grant())
    cust.timezone = "Europe/Berlin"  # 07:00Z = 09:00 CEST: allowed there
    c = check(firing(at=NIGHT), cust, channel="push")
    g.quiet_hours(c)
    assert c.send_after == NIGHT


def test_quiet_hours_customer_period_narrows() -> None:
    cust = customer(push=grant())
    cust.quiet = (20 * 60, 9 * 60)
    c = check(firing(at=NIGHT), cust, channel="push")
    g.quiet_hours(c)
    assert c.send_after == datetime(2026, 6, 10, 13, 0, tzinfo=UTC).timestamp()  # 09:00 EDT


def test_quiet_hours_never_open_leaves_send_after_unbounded_then_stale() -> None:
    cust = customer(push=grant())
    cust.quiet = (7 * 60, 22 * 60)
    c = check(firing(at=NOON), cust, channel="push")
    assert g.quiet_hours(c) is None
    assert g.staleness(c) == "stale"


def test_policy_may_hold_email_to_quiet_hours() -> None:
    p = variant('channels = ["sms", "push", "phone"]',
                'channels = ["sms", "push", "phone", "email"]')
    c = check(firing(at=NIGHT), policy=p)
    g.quiet_hours(c)
    assert c.send_after == datetime(2026, 6, 10, 12, 0, tzinfo=UTC).timestamp()


# ------------------------------------------------------- 6 frequency caps


def test_no_history_passes_caps() -> None:
    assert g.frequency_caps(check()) is None


def test_one_per_16h_exactly_16h_later_passes() -> None:
    cust = customer(email=grant())
    cust.sent = [sent(NOON - 16 * H)]
    assert g.frequency_caps(check(cust=cust)) is None


def test_one_per_16h_a_second_inside_fails() -> None:
    cust = customer(email=grant())
    cust.sent = [sent(NOON - 16 * H + 1)]
    assert g.frequency_caps(check(cust=cust)) == "frequency_cap"


def test_16h_cap_counts_every_channel() -> None:
    cust = customer(email=grant())
    cust.sent = [sent(NOON - H, channel="push", kind="low_stock", target="sku-9")]
    assert g.frequency_caps(check(cust=cust)) == "frequency_cap"


def test_cancelled_intents_are_not_counted() -> None:
    cust = customer(email=grant())
    cust.sent = [sent(NOON - H, cancelled=True)]
    assert g.frequency_caps(check(cust=cust)) is None


def test_three_per_7d_fourth_inside_fails() -> None:
    cust = customer(email=grant())
    cust.sent = [sent(NOON - 7 * D + 1), sent(NOON - 3 * D), sent(NOON - 17 * H)]
    assert g.frequency_caps(check(cust=cust)) == "frequency_cap"


def test_three_per_7d_oldest_exactly_7d_ago_passes() -> None:
    cust = customer(email=grant())
    cust.sent = [sent(NOON - 7 * D), sent(NOON - 3 * D), sent(NOON - 17 * H)]
    assert g.frequency_caps(check(cust=cust)) is None


def _sms_only_cap_policy() -> Policy:
    text = DEFAULT_TOML.replace('window = "16h"\nmax = 1', 'window = "16h"\nmax = 100', 1)
    text = text.replace('window = "7d"\nmax = 3', 'window = "7d"\nmax = 100', 1)
    return parse_policy(text.encode())


def test_sms_three_per_24h_fourth_fails() -> None:
    p = _sms_only_cap_policy()
    cust = customer(sms=grant())
    cust.sent = [sent(NOON - 24 * H + 1, channel="sms"), sent(NOON - 10 * H, channel="sms"),
                 sent(NOON - H, channel="sms")]
    assert g.frequency_caps(check(cust=cust, channel="sms", policy=p)) == "frequency_cap"


def test_sms_three_per_24h_oldest_exactly_24h_ago_passes() -> None:
    p = _sms_only_cap_policy()
    cust = customer(sms=grant())
    cust.sent = [sent(NOON - 24 * H, channel="sms"), sent(NOON - 10 * H, channel="sms"),
                 sent(NOON - H, channel="sms")]
    assert g.frequency_caps(check(cust=cust, channel="sms", policy=p)) is None


def test_sms_cap_does_not_limit_other_channels() -> None:
    p = _sms_only_cap_policy()
    cust = customer(email=grant())
    cust.sent = [sent(NOON - 3 * H, channel="sms"), sent(NOON - 2 * H, channel="sms"),
                 sent(NOON - H, channel="sms")]
    assert g.frequency_caps(check(cust=cust, channel="email", policy=p)) is None


def test_sms_cap_counts_only_sms() -> None:
    p = _sms_only_cap_policy()
    cust = customer(sms=grant())
    cust.sent = [sent(NOON - 3 * H, channel="email"), sent(NOON - 2 * H, channel="push"),
                 sent(NOON - H, channel="sms")]
    assert g.frequency_caps(check(cust=cust, channel="sms", policy=p)) is None


# -------------------------------------------------------------- 7 cooldown


def test_cooldown_same_kind_same_cart_inside_72h() -> None:
    cust = customer(email=grant())
    cust.sent = [sent(NOON - 72 * H + 1, target="sess-1")]
    assert g.cooldown(check(cust=cust)) == "cooldown"


def test_cooldown_exactly_72h_later_passes() -> None:
    cust = customer(email=grant())
    cust.sent = [sent(NOON - 72 * H, target="sess-1")]
    assert g.cooldown(check(cust=cust)) is None


def test_cooldown_other_cart_passes() -> None:
    cust = customer(email=grant())
    cust.sent = [sent(NOON - H, target="sess-2")]
    assert g.cooldown(check(cust=cust)) is None


def test_cooldown_other_kind_same_target_passes() -> None:
    cust = customer(email=grant())
    cust.sent = [sent(NOON - H, kind="low_stock", target="sku-1")]
    assert g.cooldown(check(firing("price_drop", target="sku-1"), cust)) is None


def test_cooldown_same_kind_same_sku() -> None:
    cust = customer(email=grant())
    cust.sent = [sent(NOON - 2 * D, kind="price_drop", target="sku-1")]
    assert g.cooldown(check(firing("price_drop", target="sku-1"), cust)) == "cooldown"


def test_cooldown_ignores_cancelled() -> None:
    cust = customer(email=grant())
    cust.sent = [sent(NOON - H, target="sess-1", cancelled=True)]
    assert g.cooldown(check(cust=cust)) is None


# --------------------------------------------------------------- 8 min lag


def test_min_lag_phone_exactly_48h_passes() -> None:
    f = firing("assist_offer", activity_at=NOON - 48 * H)
    assert g.min_lag(check(f, customer(phone=grant()), channel="phone")) is None


def test_min_lag_phone_a_second_short_fails() -> None:
    f = firing("assist_offer", activity_at=NOON - 48 * H + 1)
    assert g.min_lag(check(f, customer(phone=grant()), channel="phone")) == "min_lag"


def test_min_lag_does_not_apply_to_email() -> None:
    f = firing("abandoned_cart", activity_at=NOON - 4 * H)
    assert g.min_lag(check(f, channel="email")) is None


# ------------------------------------------------------------ 9 conversion


def test_conversion_ended_firing() -> None:
    assert g.conversion(check(firing(still_wanted=False))) == "converted"
    assert g.conversion(check(firing())) is None


# ---------------------------------------------------------------- 10 gifts


def test_gift_sku_excludes_browse() -> None:
    cust = customer(email=grant())
    cust.gift_skus = ["sku-1"]
    f = firing("browse_abandonment", target="sku-1", sessions=("sess-9",))
    assert g.gifts(check(f, cust)) == "gift_excluded"


def test_views_in_a_gift_session_exclude_browse() -> None:
    cust = customer(email=grant())
    cust.gift_sessions = ["sess-9"]
    f = firing("browse_abandonment", target="sku-1", sessions=("sess-9",))
    assert g.gifts(check(f, cust)) == "gift_excluded"


def test_browse_without_gifts_passes() -> None:
    cust = customer(email=grant())
    cust.gift_skus = ["sku-2"]
    cust.gift_sessions = ["sess-2"]
    f = firing("browse_abandonment", target="sku-1", sessions=("sess-9",))
    assert g.gifts(check(f, cust)) is None


def test_gifts_do_not_stop_cart_reminders() -> None:
    cust = customer(email=grant())
    cust.gift_skus = ["sku-1"]
    cust.gift_sessions = ["sess-1"]
    assert g.gifts(check(firing("abandoned_cart"), cust)) is None


# ---------------------------------------------------- 11 sensitive category


def test_all_items_sensitive() -> None:
    f = firing(items=[("sku-h", 1, 99.0, ["health"])])
    assert g.sensitive_category(check(f)) == "sensitive_category"


def test_some_items_left() -> None:
    f = firing(items=[("sku-h", 1, 99.0, ["health"]), ("sku-1", 1, 5.0, ["home"])])
    assert g.sensitive_category(check(f)) is None


# ------------------------------------------------------------- 12 staleness


def test_send_after_exactly_at_validity_end_is_not_stale() -> None:
    c = check()
    c.send_after = NOON + 24 * H
    assert g.staleness(c) is None


def test_send_after_past_validity_is_stale() -> None:
    c = check()
    c.send_after = NOON + 24 * H + 1
    assert g.staleness(c) == "stale"


def test_decision_after_validity_is_stale() -> None:
    assert g.staleness(check(now=NOON + 24 * H + 1)) == "stale"


# -------------------------------------------------------------- 13 erasure


def test_erasure_passes_for_existing_state() -> None:
    assert g.erasure(check()) is None


# ------------------------------------------------------------------ judge


def test_judge_defers_push_at_night_and_still_passes() -> None:
    c = check(firing(at=NIGHT), customer(push=grant()), channel="push")
    assert judge(c) is None
    assert c.send_after > NIGHT
    assert "quiet_hours" in c.passed


def test_judge_caps_before_cooldown() -> None:
    cust = customer(email=grant())
    cust.sent = [sent(NOON - H, target="sess-1")]
    assert judge(check(cust=cust)) == "frequency_cap"


def test_judge_consent_before_topic_before_dnc() -> None:
    cust = customer(email=grant())
    cust.opt_out = ["cart_reminders"]
    cust.blocked = {"email": NOON}
    assert judge(check(cust=cust)) == "topic_opt_out"
    cust.opt_out = []
    assert judge(check(cust=cust)) == "do_not_contact"
