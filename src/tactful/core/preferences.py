"""The preference center's model (SPEC §7): what a customer's choices are, read from
their state, what a submitted form asks for, and the consent and preference events that
express the difference (nothing for a field left as it was).

Pure: the state, the form's fields and the clock are passed in; the service shell renders
the page and produces the events.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import available_timezones

from tactful.core.events import (
    CHANNELS,
    Channel,
    ConsentGranted,
    ConsentRevoked,
    PreferencesSet,
    QuietHours,
    Topic,
)
from tactful.core.jurisdictions import is_region
from tactful.core.state import CustomerState

TOPICS: tuple[Topic, ...] = ("cart_reminders", "stock_alerts", "deals", "recommendations")
SOURCE = "preference_center"  # the `source` of the consent events the page writes
UNSUBSCRIBE_SOURCE = "one_click_unsubscribe"
TIMEZONES: frozenset[str] = frozenset(
    z for z in available_timezones() if "/" in z and not z.startswith(("Etc/", "SystemV/"))
) | {"UTC"}
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")

# A channel is "on" when its consent is granted, unexpired and no sender reported a stop;
# "off" when it once had a consent; "never" when the customer never gave one here: the page
# can switch a channel off, or back on, but consent to a new channel (a phone number never
# given, say) is collected where the address is verified, not by whoever holds a link.
ON, OFF, NEVER = "on", "off", "never"


@dataclass(frozen=True, slots=True)
class Choices:
    channels: tuple[tuple[Channel, str], ...]  # (channel, on/off/never) in CHANNELS order
    topics_off: frozenset[str]
    quiet: tuple[str, str] | None  # the customer's own no-contact period, "HH:MM"
    timezone: str | None
    region: str | None = None  # ISO 3166 code: the calling rules of SPEC §4.5

    def channel(self, name: str) -> str:
        return next(state for c, state in self.channels if c == name)


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def choices_of(st: CustomerState | None, now: float) -> Choices:
    """The customer's current choices (an unknown customer has none: every channel never
    consented, every topic on)."""
    if st is None:
        return Choices(tuple((c, NEVER) for c in CHANNELS), frozenset(), None, None)
    channels = []
    for c in CHANNELS:
        grant = st.consents.get(c)
        if grant is None:
            state = NEVER
        elif grant.granted and (grant.expires_at is None or grant.expires_at > now) \
                and c not in st.blocked:
            state = ON
        else:
            state = OFF
        channels.append((c, state))
    quiet = (_hhmm(st.quiet[0]), _hhmm(st.quiet[1])) if st.quiet is not None else None
    return Choices(tuple(channels), frozenset(st.opt_out), quiet, st.timezone, st.region)


@dataclass(frozen=True, slots=True)
class Submitted:
    channels_on: frozenset[str]
    topics_off: frozenset[str]
    quiet: tuple[str, str] | None
    timezone: str | None
    region: str | None = None


class FormError(ValueError):
    """A field of the form that cannot be taken: the page says which, nothing is saved."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def parse_form(fields: Mapping[str, list[str]]) -> Submitted:
    """Checked boxes are present (``channel`` and ``topic`` repeated), quiet hours are two
    ``HH:MM`` fields given both or neither, the time zone an IANA name or empty."""
    channels = fields.get("channel", [])
    topics = fields.get("topic", [])
    if any(c not in CHANNELS for c in channels):
        raise FormError("channel", "an unknown channel was sent")
    if any(t not in TOPICS for t in topics):
        raise FormError("topic", "an unknown topic was sent")
    start = _one(fields, "quiet_start")
    end = _one(fields, "quiet_end")
    quiet = None
    if start or end:
        if not (start and end):
            raise FormError("quiet", "give both the start and the end of your quiet hours")
        if not (_HHMM.match(start) and _HHMM.match(end)):
            raise FormError("quiet", "quiet hours are times such as 21:30")
        if start == end:
            raise FormError("quiet", "quiet hours need a start and an end that differ")
        quiet = (start, end)
    tz = _one(fields, "timezone") or None
    if tz is not None and tz not in TIMEZONES:
        raise FormError("timezone", "choose a time zone from the list")
    region = _one(fields, "region").upper() or None
    if region is not None and not is_region(region):
        raise FormError("region", "give your country or state as a code such as FR or US-FL")
    return Submitted(frozenset(channels), frozenset(TOPICS) - frozenset(topics), quiet, tz,
                     region)


def _one(fields: Mapping[str, list[str]], name: str) -> str:
    values = fields.get(name, [])
    if len(values) > 1:
        raise FormError(name, f"{name} was sent twice")
    return values[0].strip() if values else ""


Change = ConsentGranted | ConsentRevoked | PreferencesSet


def changes(current: Choices, wanted: Submitted, customer_id: str, now: float,
            seed: str) -> list[Change]:
    """The events that turn ``current`` into ``wanted``: a ``consent_revoked`` for each
    channel switched off, a ``consent_granted`` for each switched back on (a channel never
    consented stays as it is), one ``preferences_set`` with only the fields that changed.
    Quiet hours, the time zone and the region can be set or changed, not removed (SPEC §1's
    ``preferences_set`` has no way to clear them): left empty, they stay as they are.
    ``seed`` makes the event ids (the link token and the moment: a form sent twice in one
    second is one set of events)."""
    ts = datetime.fromtimestamp(int(now), UTC)
    out: list[Change] = []

    def event_id(what: str) -> str:
        digest = hashlib.blake2b(f"{seed}\x1f{int(now)}\x1f{what}".encode(), digest_size=10)
        return f"pc-{digest.hexdigest()}"

    for channel, state in current.channels:
        on = channel in wanted.channels_on
        if state == ON and not on:
            out.append(ConsentRevoked(event_id=event_id(f"revoke:{channel}"), ts=ts,
                                      customer_id=customer_id, channel=channel, source=SOURCE))
        elif state == OFF and on:
            out.append(ConsentGranted(event_id=event_id(f"grant:{channel}"), ts=ts,
                                      customer_id=customer_id, channel=channel, source=SOURCE))
    topics_off = None
    if wanted.topics_off != current.topics_off:
        topics_off = [t for t in TOPICS if t in wanted.topics_off]
    quiet = None
    if wanted.quiet is not None and wanted.quiet != current.quiet:
        quiet = QuietHours(start=wanted.quiet[0], end=wanted.quiet[1])
    tz = wanted.timezone if wanted.timezone not in (None, current.timezone) else None
    region = wanted.region if wanted.region not in (None, current.region) else None
    if topics_off is not None or quiet is not None or tz is not None or region is not None:
        out.append(PreferencesSet(event_id=event_id("preferences"), ts=ts,
                                  customer_id=customer_id, topics_opt_out=topics_off,
                                  quiet_hours=quiet, timezone=tz, region=region))
    return out


def unsubscribe(customer_id: str, channel: Channel, intent_id: str, now: float) -> ConsentRevoked:
    """The ``consent_revoked`` of a one-click unsubscribe. Its id is the intent's and the
    minute's: a mailbox provider's retries within the minute are one event, and a later
    repeat is another revocation of a revoked channel, which changes nothing."""
    minute = int(now) // 60
    digest = hashlib.blake2b(f"{intent_id}\x1f{channel}\x1f{minute}".encode(), digest_size=10)
    return ConsentRevoked(event_id=f"ou-{digest.hexdigest()}",
                          ts=datetime.fromtimestamp(int(now), UTC), customer_id=customer_id,
                          channel=channel, source=UNSUBSCRIBE_SOURCE)
