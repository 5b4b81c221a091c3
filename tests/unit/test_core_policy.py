"""The policy file (SPEC §3–§4 numbers) and how a wrong file is refused (CONVENTIONS §4)."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest

from tactful.core.errors import PolicyError
from tactful.core.policy import load_policy, parse_policy

H = 3600.0
D = 24 * H
DEFAULT_TOML = (resources.files("tactful") / "policy" / "default.toml").read_text()


def edit(section: str | None, old: str, new: str, text: str = DEFAULT_TOML) -> str:
    """Replace the first ``old`` at or after the ``[section]`` header (the top when None)."""
    start = 0
    if section is not None:
        start = text.index(f"[{section}]\n")
    at = text.index(old, start)
    return text[:at] + new + text[at + len(old):]


def line_of(text: str, needle: str, section: str | None = None) -> int:
    """1-based line number of the first line containing ``needle`` after ``[section]``."""
    start = 0 if section is None else text.index(f"[{section}]\n")
    return text.count("\n", 0, text.index(needle, start)) + 1


def refuse(text: str, name: str = "custom.toml") -> PolicyError:
    with pytest.raises(PolicyError) as info:
        parse_policy(text.encode(), name)
    return info.value


# ------------------------------------------------------------- SPEC numbers


@pytest.fixture(scope="module")
def policy():  # type: ignore[no-untyped-def]
    return load_policy()


def test_default_trigger_delays_match_spec_3(policy) -> None:  # type: ignore[no-untyped-def]
    t = policy.triggers
    assert t["abandoned_cart"].delay == 4 * H  # §3: no activity for 4 h
    assert t["assist_offer"].delay == 48 * H  # §3: abandoned ≥ 48 h
    assert t["browse_abandonment"].delay == 24 * H  # §3: fires 24 h after the last view
    assert policy.assist_min_cart_value == 500  # §3: cart value ≥ 500
    assert policy.assist_after_reminder == 24 * H  # §3: intent went out ≥ 24 h ago
    assert policy.assist_reminder_channels == {"email"}  # §3: default email only
    assert policy.browse_min_views == 3  # §3: viewed ≥ 3 times
    assert policy.browse_view_window == 24 * H  # §3: within 24 h
    assert policy.low_stock_threshold == 3  # §3: falls to ≤ 3 from above 3
    assert policy.price_drop_min == pytest.approx(0.10)  # §3: ≥ 10 % below
    assert policy.triggers["post_purchase"].delay == 7 * 86400  # §3: 7 days after a purchase


def test_default_trigger_channels_and_topics_match_spec_3(policy) -> None:  # type: ignore[no-untyped-def]
    want = {
        "abandoned_cart": (("email", "push", "sms"), "cart_reminders"),
        "assist_offer": (("phone",), "cart_reminders"),
        "browse_abandonment": (("email",), "recommendations"),
        "low_stock": (("push", "sms", "email"), "stock_alerts"),
        "back_in_stock": (("push", "email", "sms"), "stock_alerts"),
        "price_drop": (("email", "push"), "deals"),
        "post_purchase": (("email",), "recommendations"),
    }
    assert set(policy.triggers) == set(want)
    for kind, (channels, topic) in want.items():
        assert policy.triggers[kind].channels == channels, kind
        assert policy.triggers[kind].topic == topic, kind


def test_default_guardrail_numbers_match_spec_4(policy) -> None:  # type: ignore[no-untyped-def]
    assert policy.quiet_from == 8 * 60  # §4.5: 08:00
    assert policy.quiet_until == 21 * 60  # §4.5: 21:00
    assert policy.quiet_channels == {"sms", "push", "phone"}  # §4.5: email not held
    assert policy.default_timezone == "America/New_York"  # §4.5
    caps = {(c.window, c.max, c.channel) for c in policy.frequency_caps}
    assert caps == {(16 * H, 1, None), (7 * D, 3, None), (24 * H, 3, "sms")}  # §4.6
    assert policy.cooldown == 72 * H  # §4.7
    assert policy.min_lag_channels == {"phone"}  # §4.8
    assert policy.min_lag == 48 * H  # §4.8
    assert policy.sensitive == {"health", "medical", "adult", "pregnancy", "age_related"}  # §4.11
    assert policy.validity == 24 * H  # §4.12: 24 h after it fired


def test_default_policy_loads_from_the_package_and_names_its_version(policy) -> None:  # type: ignore[no-untyped-def]
    assert policy.version.startswith("2026.11-default+")


# ---------------------------------------------------------------- versions


def test_version_is_file_version_plus_content_hash() -> None:
    p = parse_policy(DEFAULT_TOML.encode())
    file_version, digest = p.version.split("+", 1)
    assert file_version == "2026.11-default"
    assert re.fullmatch(r"[0-9a-f]{8,}", digest)


def test_same_bytes_same_version() -> None:
    raw = DEFAULT_TOML.encode()
    assert parse_policy(raw).version == parse_policy(raw).version


def test_different_content_different_version_even_with_same_file_version() -> None:
    other = edit("cooldown", 'window = "72h"', 'window = "96h"')
    a = parse_policy(DEFAULT_TOML.encode()).version
    b = parse_policy(other.encode()).version
    assert a != b
    assert a.split("+")[0] == b.split("+")[0]


def test_comment_only_change_still_changes_version() -> None:
    a = parse_policy(DEFAULT_TOML.encode()).version
    b = parse_policy((DEFAULT_TOML + "\n# tweaked\n").encode()).version
    assert a != b


def test_load_policy_from_a_path(tmp_path: Path) -> None:
    f = tmp_path / "p.toml"
    f.write_text(edit("cooldown", 'window = "72h"', 'window = "5d"'))
    assert load_policy(f).cooldown == 5 * D


# ------------------------------------------------------------ refused files


def test_unknown_top_level_key_names_key_and_line() -> None:
    text = edit(None, 'validity = "24h"\n', 'validity = "24h"\ncolour = "blue"\n')
    err = refuse(text)
    assert err.file == "custom.toml"
    assert err.key == "colour"
    assert "unknown key" in err.reason
    assert err.line == line_of(text, "colour =")


def test_unknown_key_in_a_trigger_table() -> None:
    text = edit("triggers.abandoned_cart", 'delay = "4h"\n', 'delay = "4h"\ndelai = "5h"\n')
    err = refuse(text)
    assert err.key == "triggers.abandoned_cart.delai"
    assert "unknown key" in err.reason
    assert err.line == line_of(text, "delai =")


def test_unknown_key_in_quiet_hours() -> None:
    text = edit("quiet_hours", 'allowed_from = "08:00"\n', 'allowed_from = "08:00"\nsilent = 1\n')
    err = refuse(text)
    assert err.key == "quiet_hours.silent"
    assert err.line == line_of(text, "silent =")


def test_bad_duration_names_key_value_and_line() -> None:
    text = edit("triggers.abandoned_cart", 'delay = "4h"', 'delay = "4 hours"')
    err = refuse(text)
    assert err.key == "triggers.abandoned_cart.delay"
    assert "duration" in err.reason and "4 hours" in err.reason
    assert err.line == line_of(text, 'delay = "4 hours"')
    assert f"custom.toml:{err.line}" in str(err)


def test_bad_duration_in_a_later_trigger_points_at_its_own_line() -> None:
    # `delay` also appears in [triggers.abandoned_cart]; the error must point at the bad one.
    text = edit("triggers.browse_abandonment", 'delay = "24h"', 'delay = "1x"')
    err = refuse(text)
    assert err.key == "triggers.browse_abandonment.delay"
    assert "1x" in err.reason
    assert err.line == line_of(text, 'delay = "1x"')


def test_bad_cooldown_window_points_at_the_cooldown_line() -> None:
    # `window` first appears under [[frequency_caps]]; the bad one is under [cooldown].
    text = edit("cooldown", 'window = "72h"', 'window = "72"')
    err = refuse(text)
    assert err.key == "cooldown.window"
    assert err.line == line_of(text, 'window = "72"')


def test_unknown_channel_names_it() -> None:
    text = edit("triggers.abandoned_cart", '["email", "push", "sms"]', '["email", "fax"]')
    err = refuse(text)
    assert err.key == "triggers.abandoned_cart.channels"
    assert "unknown channel" in err.reason and "fax" in err.reason
    assert err.line == line_of(text, '"fax"')


def test_unknown_channel_in_a_later_table_points_at_its_own_line() -> None:
    text = edit("triggers.low_stock", '["push", "sms", "email"]', '["push", "pigeon"]')
    err = refuse(text)
    assert err.key == "triggers.low_stock.channels"
    assert "pigeon" in err.reason
    assert err.line == line_of(text, '"pigeon"')


def test_reminder_channels_name_which_reminders_open_the_way_to_a_call() -> None:
    text = edit("triggers.assist_offer", 'reminder_channels = ["email"]',
                'reminder_channels = ["email", "push"]')
    assert parse_policy(text.encode()).assist_reminder_channels == {"email", "push"}


def test_reminder_channels_default_to_email_in_an_older_file() -> None:
    text = edit("triggers.assist_offer", 'reminder_channels = ["email"]\n', "")
    assert "reminder_channels =" not in text
    assert parse_policy(text.encode()).assist_reminder_channels == {"email"}


@pytest.mark.parametrize(("value", "needle"), [
    ('["email", "carrier_pigeon"]', "carrier_pigeon"),
    ("[]", "must not be empty"),
    ('"email"', "list of channel names"),
])
def test_bad_reminder_channels_are_refused_at_their_line(value: str, needle: str) -> None:
    text = edit("triggers.assist_offer", 'reminder_channels = ["email"]',
                f"reminder_channels = {value}")
    err = refuse(text)
    assert err.key == "triggers.assist_offer.reminder_channels"
    assert needle in err.reason
    assert err.line == line_of(text, "reminder_channels =", "triggers.assist_offer")


def test_unknown_channel_on_a_frequency_cap() -> None:
    text = edit(None, 'channel = "sms"', 'channel = "telegram"')
    err = refuse(text)
    assert err.key == "frequency_caps[2].channel"
    assert "telegram" in err.reason
    assert err.line == line_of(text, 'channel = "telegram"')


@pytest.mark.parametrize("until", ["08:00", "07:59", "00:00"])
def test_allowed_until_not_after_allowed_from(until: str) -> None:
    text = edit("quiet_hours", 'allowed_until = "21:00"', f'allowed_until = "{until}"')
    err = refuse(text)
    assert err.key == "quiet_hours.allowed_until"
    assert "later than allowed_from" in err.reason
    assert err.line == line_of(text, "allowed_until =")


@pytest.mark.parametrize("value", ["25:00", "8:00", "08:60", "noon"])
def test_bad_clock_time(value: str) -> None:
    text = edit("quiet_hours", 'allowed_from = "08:00"', f'allowed_from = "{value}"')
    err = refuse(text)
    assert err.key == "quiet_hours.allowed_from"
    assert value in err.reason


def test_unknown_time_zone() -> None:
    text = edit(None, '"America/New_York"', '"Mars/Olympus_Mons"')
    err = refuse(text)
    assert err.key == "default_timezone"
    assert "Mars/Olympus_Mons" in err.reason
    assert err.line == line_of(text, "default_timezone =")


def test_invalid_toml_names_file_and_line() -> None:
    text = edit(None, 'validity = "24h"', 'validity = "24h')  # unterminated string
    err = refuse(text)
    assert err.file == "custom.toml"
    assert "TOML" in err.reason
    bad = line_of(text, 'validity = "24h')
    assert err.line == bad or f"line {bad}" in str(err)


def test_missing_trigger_table() -> None:
    start = DEFAULT_TOML.index("[triggers.price_drop]")
    end = DEFAULT_TOML.index("[quiet_hours]")
    err = refuse(DEFAULT_TOML[:start] + DEFAULT_TOML[end:])
    assert err.key == "triggers.price_drop"
    assert "missing" in err.reason


def test_unknown_trigger_table() -> None:
    text = DEFAULT_TOML + '\n[triggers.birthday]\nchannels = ["email"]\ntopic = "deals"\n'
    err = refuse(text)
    assert err.key == "triggers.birthday"
    assert "unknown key" in err.reason


def test_unknown_topic() -> None:
    text = edit("triggers.price_drop", 'topic = "deals"', 'topic = "bargains"')
    err = refuse(text)
    assert err.key == "triggers.price_drop.topic"


def test_min_drop_out_of_range() -> None:
    text = edit("triggers.price_drop", "min_drop = 0.10", "min_drop = 1.5")
    err = refuse(text)
    assert err.key == "triggers.price_drop.min_drop"
    assert err.line == line_of(text, "min_drop =")


def test_unreadable_file_is_a_policy_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(PolicyError) as info:
        load_policy(missing)
    assert str(missing) in str(info.value)


def test_error_from_load_policy_names_the_path(tmp_path: Path) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(edit("cooldown", 'window = "72h"', 'window = "three days"'))
    with pytest.raises(PolicyError) as info:
        load_policy(f)
    assert info.value.file == str(f)
    assert str(f) in str(info.value)


def test_empty_channel_list_is_allowed_for_a_trigger() -> None:
    # SPEC §3: `no_channel` when none is configured — an empty list is a valid policy.
    text = edit("triggers.abandoned_cart", '["email", "push", "sms"]', "[]")
    assert parse_policy(text.encode()).triggers["abandoned_cart"].channels == ()


# ------------------------------------------------------------- hostile numbers


def test_a_duration_beyond_a_year_is_refused_at_load() -> None:
    text = edit(None, 'validity = "24h"', 'validity = "100000000000d"')
    err = refuse(text)
    assert err.key == "validity" and err.line == line_of(text, "validity =")
    err = refuse(edit(None, 'validity = "24h"', 'validity = "367d"'))
    assert "at most 366d" in err.reason


def test_the_dedup_window_has_a_floor() -> None:
    err = refuse(edit(None, 'dedup_window = "7d"', 'dedup_window = "0s"'))
    assert err.key == "dedup_window" and "at least 3600s" in err.reason
    assert parse_policy(edit(None, 'dedup_window = "7d"', 'dedup_window = "1h"').encode())


def _without(header: str, text: str = DEFAULT_TOML) -> str:
    """The text without the table (or every array table) named ``header``, up to the next."""
    lines, out, skipping = text.splitlines(keepends=True), [], False
    for line in lines:
        if line.startswith("["):
            skipping = line.strip().strip("[]") == header
        if not skipping:
            out.append(line)
    return "".join(out)


def test_a_missing_guardrail_table_is_refused_not_silently_off() -> None:
    for header in ("sensitive", "frequency_caps", "cooldown", "min_lag", "quiet_hours"):
        err = refuse(_without(header))
        assert err.key == header and "missing" in err.reason, header


def test_guardrails_can_be_emptied_explicitly() -> None:
    cats = 'categories = ["health", "medical", "adult", "pregnancy", "age_related"]'
    text = "frequency_caps = []\n" + _without("frequency_caps").replace(cats, "categories = []")
    policy = parse_policy(text.encode())
    assert policy.frequency_caps == () and policy.sensitive == frozenset()
    assert refuse(DEFAULT_TOML.replace(cats, "")).key == "sensitive.categories"


def test_the_skew_and_late_input_bounds_have_defaults_and_limits() -> None:
    policy = parse_policy(DEFAULT_TOML.encode())
    assert policy.max_future_skew == 15 * 60 and policy.late_input_window == 30 * D
    bare = DEFAULT_TOML.replace('max_future_skew = "15m"\n', "").replace(
        'late_input_window = "30d"\n', "")
    assert parse_policy(bare.encode()).max_future_skew == 15 * 60
    assert refuse(edit(None, 'max_future_skew = "15m"', 'max_future_skew = "2d"')).key == \
        "max_future_skew"
    err = refuse(edit(None, 'late_input_window = "30d"', 'late_input_window = "1d"'))
    assert "at least dedup_window" in err.reason


def test_a_toml_syntax_error_names_file_and_line() -> None:
    text = edit(None, 'session_ttl = "30d"', "session_ttl = = 3")
    err = refuse(text, "shop.toml")
    assert err.line == line_of(text, "session_ttl = = 3")
    assert str(err).startswith(f"shop.toml:{err.line}: ")


def test_the_readme_quotes_the_packaged_policy_version() -> None:
    # The README's example intent is what `tactful replay` writes with the packaged policy;
    # a change of default.toml changes its policy_version (a hash of the file).
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    quoted = set(re.findall(r"2026\.11-default\+[0-9a-f]{12}", readme))
    assert quoted == {load_policy().version}


def test_link_expiry_is_60_days_by_default_and_bounded() -> None:
    assert parse_policy(DEFAULT_TOML.encode()).link_expiry == 60 * D
    bare = DEFAULT_TOML.split("\n[links]")[0]
    assert "[links]" not in bare
    assert parse_policy(bare.encode()).link_expiry == 60 * D
    assert parse_policy(edit("links", 'expiry = "60d"', 'expiry = "7d"').encode()
                        ).link_expiry == 7 * D
    assert refuse(edit("links", 'expiry = "60d"', 'expiry = "10m"')).key == "links.expiry"
    assert refuse(edit("links", 'expiry = "60d"', 'expiry = "400d"')).key == "links.expiry"
    assert refuse(edit("links", 'expiry = "60d"', 'lifetime = "60d"')).key == "links.lifetime"
