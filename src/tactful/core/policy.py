"""The policy: every number of SPEC §3–§4, loaded from one TOML file.

A wrong file fails at start with the file, key and reason (``PolicyError``).
``version`` on every intent is the file's own version plus a hash of its bytes,
so two files that differ never share a version.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tactful.core.errors import PolicyError
from tactful.core.events import CHANNELS
from tactful.core.jurisdictions import NO_JURISDICTIONS, Jurisdictions, parse_jurisdictions
from tactful.core.outputs import TriggerKind

# Every trigger kind, in the order triggers due at the same moment fire (SPEC §3's table).
KINDS: tuple[str, ...] = get_args(TriggerKind)
TOPICS = ("cart_reminders", "stock_alerts", "deals", "recommendations")
_DURATION = re.compile(r"^([0-9]{1,9})([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# No rule needs a duration longer than a year; longer ones overflow date arithmetic.
MAX_DURATION = 366 * 86400.0
# A redelivery after a crash or rebalance comes within minutes; below an hour the
# dedup memory would let a repeat through and apply it twice.
MIN_DEDUP_WINDOW = 3600.0
_TOML_LINE = re.compile(r"at line (\d+)")
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


@dataclass(frozen=True, slots=True)
class TriggerPolicy:
    kind: str
    channels: tuple[str, ...]
    topic: str
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class FrequencyCap:
    window: float
    max: int
    channel: str | None  # None: across all channels


@dataclass(frozen=True, slots=True)
class Policy:
    version: str
    default_timezone: str
    validity: float
    dedup_window: float
    session_ttl: float
    triggers: dict[str, TriggerPolicy]
    assist_min_cart_value: float
    assist_after_reminder: float
    # The channels of an abandoned_cart reminder that open the way to a call (SPEC §3's
    # email-first ladder): a push nobody saw is no invitation to phone.
    assist_reminder_channels: frozenset[str]
    browse_min_views: int
    browse_view_window: float
    low_stock_threshold: int
    price_drop_min: float
    quiet_from: int  # minutes after local midnight
    quiet_until: int
    quiet_channels: frozenset[str]
    frequency_caps: tuple[FrequencyCap, ...]
    cooldown: float
    min_lag_channels: frozenset[str]
    min_lag: float
    sensitive: frozenset[str]
    # Hostile-input bounds (README, "Dead letter"): how far ahead of the processing clock
    # an input's ts may lie, and how long an erasure mark refuses late inputs.
    max_future_skew: float = 900.0
    late_input_window: float = 30 * 86400.0
    # How many of a customer's latest inputs and decisions explain shows ([explain]).
    explain_inputs: int = 20
    explain_decisions: int = 50
    # How long a channel is not used after a sender reported a bounce on it ([feedback]).
    bounce_suppress: float = 30 * 86400.0
    # Calling rules per region and the zones of regions (SPEC §4.5, core/jurisdictions.py).
    jurisdictions: Jurisdictions = NO_JURISDICTIONS
    # How long an intent's unsubscribe and preference links open, from its created_at.
    link_expiry: float = 60 * 86400.0

    @property
    def longest_memory(self) -> float:
        """How long intent history must be kept to answer every cap and cooldown."""
        windows = [c.window for c in self.frequency_caps]
        windows += [self.cooldown, self.assist_after_reminder + self.triggers["assist_offer"].delay]
        windows.append(self.jurisdictions.longest_window)
        return max(windows)


DEFAULT_POLICY_FILE = "default.toml"


def load_policy(path: str | Path | None = None) -> Policy:
    """Load and validate a policy file; the packaged default when ``path`` is None."""
    if path is None:
        ref = resources.files("tactful") / "policy" / DEFAULT_POLICY_FILE
        raw = ref.read_bytes()
        name = f"tactful/policy/{DEFAULT_POLICY_FILE}"
    else:
        name = str(path)
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise PolicyError(name, "-", f"cannot read: {exc.strerror}") from None
    return parse_policy(raw, name)


def parse_policy(raw: bytes, name: str = "<policy>") -> Policy:
    text = raw.decode("utf-8", errors="replace")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = _TOML_LINE.search(str(exc))
        line = int(found.group(1)) if found else None
        raise PolicyError(name, "-", f"not valid TOML: {exc}", line) from None
    reader = _Reader(name, text)
    policy = reader.policy(doc)
    digest = hashlib.sha256(raw).hexdigest()[:12]
    return _with_version(policy, f"{policy.version}+{digest}")


def _with_version(policy: Policy, version: str) -> Policy:
    from dataclasses import replace

    return replace(policy, version=version)


class _Reader:
    """Reads the TOML document key by key, so every error names its key."""

    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.text = text

    def fail(self, key: str, reason: str) -> PolicyError:
        return PolicyError(self.name, key, reason, self._line_of(key))

    def _line_of(self, key: str) -> int | None:
        """The line of ``key`` (dotted, ``name[i]`` for array tables), or of its table."""
        table, _, leaf = key.rpartition(".")
        if "[" in leaf:  # the key names an array table element itself
            table, leaf = key, ""
        want_name, _, index_text = table.partition("[")
        want_index = int(index_text.rstrip("]")) if index_text else 0
        current, seen = "", dict[str, int]()
        header_line = None
        for number, content in enumerate(self.text.splitlines(), start=1):
            header = re.match(r"^\s*\[\[?\s*([A-Za-z0-9_.]+)\s*\]\]?", content)
            if header:
                current = header.group(1)
                seen[current] = seen.get(current, -1) + 1
                if current == want_name and seen[current] == want_index:
                    header_line = number
                continue
            in_table = current == want_name and seen.get(current, 0) == want_index
            if in_table and leaf and re.match(rf"^\s*{re.escape(leaf)}\s*=", content):
                return number
        return header_line

    def table(self, doc: dict[str, Any], key: str, allowed: set[str]) -> dict[str, Any]:
        value = doc.get(key.rsplit(".", 1)[-1], {})
        if not isinstance(value, dict):
            raise self.fail(key, "must be a table")
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise self.fail(f"{key}.{unknown[0]}", "unknown key")
        return value

    def duration(self, table: dict[str, Any], key: str, full: str, lo: float = 0.0,
                 default: str | None = None) -> float:
        value = table.get(key, default)
        if not isinstance(value, str) or not (m := _DURATION.match(value)):
            raise self.fail(full, f"must be a duration like '4h' or '90m', got {value!r}")
        seconds = float(int(m.group(1)) * _UNITS[m.group(2)])
        if seconds > MAX_DURATION:
            raise self.fail(full, f"must be at most 366d, got {value!r}")
        if seconds < lo:
            raise self.fail(full, f"must be at least {lo:.0f}s, got {value!r}")
        return seconds

    def required(self, doc: dict[str, Any], key: str, hint: str) -> None:
        """A guardrail's table may be empty, but never missing: absent, it would switch
        the guardrail off without a word."""
        if key not in doc:
            raise self.fail(key, f"missing ({hint})")

    def number(self, table: dict[str, Any], key: str, full: str, lo: float, hi: float) -> float:
        value = table.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(full, f"must be a number, got {value!r}")
        if not lo <= value <= hi:
            raise self.fail(full, f"must be between {lo} and {hi}, got {value!r}")
        return float(value)

    def channels(
        self, table: dict[str, Any], key: str, full: str, empty_ok: bool
    ) -> tuple[str, ...]:
        value = table.get(key)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(full, "must be a list of channel names")
        bad = [v for v in value if v not in CHANNELS]
        if bad:
            raise self.fail(full, f"unknown channel {bad[0]!r} (one of {', '.join(CHANNELS)})")
        if len(set(value)) != len(value):
            raise self.fail(full, "lists a channel twice")
        if not value and not empty_ok:
            raise self.fail(full, "must not be empty")
        return tuple(value)

    def hhmm(self, table: dict[str, Any], key: str, full: str) -> int:
        value = table.get(key)
        if not isinstance(value, str) or not (m := _HHMM.match(value)):
            raise self.fail(full, f"must be a time 'HH:MM', got {value!r}")
        return int(m.group(1)) * 60 + int(m.group(2))

    def policy(self, doc: dict[str, Any]) -> Policy:
        top = {
            "version", "default_timezone", "validity", "dedup_window", "session_ttl", "triggers",
            "quiet_hours", "frequency_caps", "cooldown", "min_lag", "sensitive",
            "max_future_skew", "late_input_window", "explain", "jurisdictions",
            "region_timezones", "links", "feedback",
        }
        unknown = sorted(set(doc) - top)
        if unknown:
            raise self.fail(unknown[0], "unknown key")
        version = doc.get("version")
        if not isinstance(version, str) or not version:
            raise self.fail("version", "must be a non-empty string")
        tz = doc.get("default_timezone")
        if not isinstance(tz, str):
            raise self.fail("default_timezone", "must be an IANA time zone name")
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise self.fail("default_timezone", f"unknown time zone {tz!r}") from None

        triggers_doc = self.table(doc, "triggers", set(KINDS))
        missing = [k for k in KINDS if k not in triggers_doc]
        if missing:
            raise self.fail(f"triggers.{missing[0]}", "missing trigger table")
        extra_keys = {
            "abandoned_cart": {"delay"},
            "assist_offer": {"delay", "min_cart_value", "after_reminder", "reminder_channels"},
            "browse_abandonment": {"delay", "min_views", "view_window"},
            "low_stock": {"threshold"},
            "back_in_stock": set(),
            "price_drop": {"min_drop"},
            "post_purchase": {"delay"},
        }
        triggers: dict[str, TriggerPolicy] = {}
        for kind in KINDS:
            full = f"triggers.{kind}"
            t = self.table(triggers_doc, full, {"channels", "topic"} | extra_keys[kind])
            topic = t.get("topic")
            if topic not in TOPICS:
                raise self.fail(f"{full}.topic", f"must be one of {', '.join(TOPICS)}")
            delay = self.duration(t, "delay", f"{full}.delay") if "delay" in extra_keys[kind] else 0
            chans = self.channels(t, "channels", f"{full}.channels", empty_ok=True)
            triggers[kind] = TriggerPolicy(kind, chans, str(topic), delay)
        assist = triggers_doc["assist_offer"]
        browse = triggers_doc["browse_abandonment"]
        # SPEC §3: email only unless the policy says otherwise (older files keep that).
        reminder_channels = self.channels(
            {"reminder_channels": assist.get("reminder_channels", ["email"])},
            "reminder_channels", "triggers.assist_offer.reminder_channels", empty_ok=False,
        )

        self.required(doc, "quiet_hours", "a [quiet_hours] table")
        self.required(doc, "frequency_caps",
                      "[[frequency_caps]] tables, or `frequency_caps = []` for none")
        self.required(doc, "cooldown", "a [cooldown] table")
        self.required(doc, "min_lag", "a [min_lag] table")
        self.required(doc, "sensitive", "a [sensitive] table; `categories = []` for none")
        quiet = self.table(doc, "quiet_hours", {"allowed_from", "allowed_until", "channels"})
        quiet_from = self.hhmm(quiet, "allowed_from", "quiet_hours.allowed_from")
        quiet_until = self.hhmm(quiet, "allowed_until", "quiet_hours.allowed_until")
        if quiet_from >= quiet_until:
            raise self.fail("quiet_hours.allowed_until", "must be later than allowed_from")

        caps_doc = doc.get("frequency_caps", [])
        if not isinstance(caps_doc, list):
            raise self.fail("frequency_caps", "must be an array of tables")
        caps = []
        for i, cap in enumerate(caps_doc):
            full = f"frequency_caps[{i}]"
            if not isinstance(cap, dict):
                raise self.fail(full, "must be a table")
            unknown = sorted(set(cap) - {"window", "max", "channel"})
            if unknown:
                raise self.fail(f"{full}.{unknown[0]}", "unknown key")
            channel = cap.get("channel")
            if channel is not None and channel not in CHANNELS:
                raise self.fail(f"{full}.channel", f"unknown channel {channel!r}")
            caps.append(
                FrequencyCap(
                    self.duration(cap, "window", f"{full}.window"),
                    int(self.number(cap, "max", f"{full}.max", 0, 1_000_000)),
                    channel,
                )
            )

        cooldown = self.table(doc, "cooldown", {"window"})
        min_lag = self.table(doc, "min_lag", {"channels", "lag"})
        sensitive = self.table(doc, "sensitive", {"categories"})
        if "categories" not in sensitive:
            raise self.fail("sensitive.categories", "missing (`categories = []` for none)")
        cats = sensitive["categories"]
        if not isinstance(cats, list) or not all(isinstance(c, str) and c for c in cats):
            raise self.fail("sensitive.categories", "must be a list of category names")
        for key in ("validity", "dedup_window", "session_ttl"):
            if key not in doc:
                raise self.fail(key, "missing")
        ttl = self.duration(doc, "session_ttl", "session_ttl")
        if ttl <= max(t.delay for t in triggers.values()):
            raise self.fail("session_ttl", "must be longer than every trigger's delay")
        dedup = self.duration(doc, "dedup_window", "dedup_window", lo=MIN_DEDUP_WINDOW)
        late = self.duration(doc, "late_input_window", "late_input_window", default="30d")
        if late < dedup:
            raise self.fail("late_input_window", "must be at least dedup_window")
        skew = self.duration(doc, "max_future_skew", "max_future_skew", default="15m")
        if skew > 86400:
            raise self.fail("max_future_skew", "must be at most 1d")
        feedback = self.table(doc, "feedback", {"bounce_suppress"})
        bounce_suppress = self.duration(feedback, "bounce_suppress", "feedback.bounce_suppress",
                                        default="30d")
        explain = self.table(doc, "explain", {"inputs", "decisions"})
        kept = {"inputs": 20, "decisions": 50}
        for key in kept:
            if key in explain:
                n = self.number(explain, key, f"explain.{key}", 0, 1000)
                if not n.is_integer():
                    raise self.fail(f"explain.{key}", f"must be a whole number, got {n:g}")
                kept[key] = int(n)

        links = self.table(doc, "links", {"expiry"})
        link_expiry = self.duration(links, "expiry", "links.expiry", lo=3600.0, default="60d")

        return Policy(
            version=version,
            default_timezone=tz,
            validity=self.duration(doc, "validity", "validity", lo=60.0),
            dedup_window=dedup,
            session_ttl=self.duration(doc, "session_ttl", "session_ttl"),
            triggers=triggers,
            assist_min_cart_value=self.number(
                assist, "min_cart_value", "triggers.assist_offer.min_cart_value", 0, 1e12
            ),
            assist_after_reminder=self.duration(
                assist, "after_reminder", "triggers.assist_offer.after_reminder"
            ),
            assist_reminder_channels=frozenset(reminder_channels),
            browse_min_views=int(
                self.number(browse, "min_views", "triggers.browse_abandonment.min_views", 1, 1000)
            ),
            browse_view_window=self.duration(
                browse, "view_window", "triggers.browse_abandonment.view_window"
            ),
            low_stock_threshold=int(
                self.number(
                    triggers_doc["low_stock"], "threshold", "triggers.low_stock.threshold", 0, 1e9
                )
            ),
            price_drop_min=self.number(
                triggers_doc["price_drop"], "min_drop", "triggers.price_drop.min_drop", 0.0, 1.0
            ),
            quiet_from=quiet_from,
            quiet_until=quiet_until,
            quiet_channels=frozenset(
                self.channels(quiet, "channels", "quiet_hours.channels", empty_ok=True)
            ),
            frequency_caps=tuple(caps),
            cooldown=self.duration(cooldown, "window", "cooldown.window"),
            min_lag_channels=frozenset(
                self.channels(min_lag, "channels", "min_lag.channels", empty_ok=True)
            ),
            min_lag=self.duration(min_lag, "lag", "min_lag.lag"),
            sensitive=frozenset(cats),
            max_future_skew=skew,
            late_input_window=late,
            explain_inputs=kept["inputs"],
            explain_decisions=kept["decisions"],
            jurisdictions=parse_jurisdictions(doc, self),
            link_expiry=link_expiry,
            bounce_suppress=bounce_suppress,
        )
