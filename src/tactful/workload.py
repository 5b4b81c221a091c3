"""A deterministic synthetic storefront workload (`tactful generate`).

The generator is a small discrete-event simulation. A priority queue holds
timed items: events ready to be emitted, and tasks (a customer's next session,
the arrival of new customers, anonymous traffic, inventory ticks, inventory
"stories" about carted skus, sender feedback). Popping the queue in time order
gives events in arrival order; a task only ever schedules items at or after its
own time. Arrival order is `ts` order but for late feedback (a sender's batch,
stamped with the moment it happened) and redeliveries of a line already
written. Memory is O(customers + catalog), independent of the number of events:
nothing about past events is kept beyond each customer's one open cart.

Every random choice comes from one `random.Random(seed)`, and the clock is
simulated from `start`, so the same arguments give the same events, byte for
byte.

What the mix is built to exercise (SPEC §1, §3, §4):

- consent grants per channel (email most, sms/push some, phone rare but common
  where calling laws apply; some expiring within hours or days, inside the
  workload, some later revoked), `preferences_set` with IANA time zones and
  regions (US states with and without calling rules, the US as a whole, France
  and two of its departments; some without a time zone: fail closed), topic
  opt-outs, quiet hours (some wrapping midnight), sensitive opt-ins;
- anonymous browsing; sessions that log in (`login` / `email_link`) after an
  anonymous prelude; sessions known only through `cookie` / `ip_match` /
  `device_graph` (sometimes pointing at another customer of the household);
- the same product viewed three or more times in a session (browse
  abandonment), carts left behind (some worth 500 or more), carts resumed
  hours or days later in the same session and then bought or emptied,
  purchases (some gifts: only the others arm a `post_purchase` follow-up a
  week later, so the workload spans it), logouts;
- customers come back after minutes, hours or days, so 4 h / 24 h / 48 h
  timers really expire before (or after) the next activity;
- `stock_level` falls to 3 or less and sell-outs followed by restocks for
  carted skus, `price_change` drops of 10 % or more on carted skus, plus
  background inventory noise; the first level reported for a sku is a
  baseline above 3;
- sender feedback a few hours after carts are abandoned (delivered, opened,
  clicked, bounced, complained, unsubscribed, do_not_contact) and rare
  `erase_requested` (an erased customer never comes back; a new customer
  takes their place so the load stays steady);
- late feedback (after events stamped later) and redelivered lines (the same
  `event_id` and bytes again, seconds to two hours later).
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson

__all__ = ["DEFAULT_START", "dumps_line", "generate"]

DEFAULT_START: Final = datetime(2026, 5, 1, tzinfo=UTC)

Event = dict[str, object]
# (offset from UTC in minutes, suffix written after the local time)
_Stamp = tuple[int, str]

_ZULU: Final[_Stamp] = (0, "Z")
_PLUS_ZERO: Final[_Stamp] = (0, "+00:00")

_MIN: Final = 60
_HOUR: Final = 3600
_DAY: Final = 86400

# Queue item kinds.
_EVENT: Final = 0
_CUSTOMER: Final = 1
_ARRIVALS: Final = 2
_ANON: Final = 3
_INVENTORY: Final = 4
_STORY: Final = 5
_FEEDBACK: Final = 6
_LATE: Final = 7  # an event delivered after later ones (ts: its own time, in b)
_REPEAT: Final = 8  # a redelivery: the very same line again

# A sender reports some feedback in batches, minutes to hours after the fact; and a
# tracker or producer sometimes delivers a line twice (a retry after a lost ack).
_LATE_FEEDBACK: Final = 0.15
_REDELIVERY: Final = 0.004

# Inventory stories about a carted sku.
_LOW: Final = 0
_SELLOUT: Final = 1
_RESTOCK: Final = 2
_PRICE_DROP: Final = 3
_PRICE_BACK: Final = 4

_ARRIVAL_SPAN: Final = 2 * _DAY  # the initial customers arrive over two days

# IANA zone, a typical UTC offset (minutes) used to write local timestamps for the
# customers whose tracker reports local time, and the region (ISO 3166) the customer
# lives in (SPEC §4.5's calling rules). The offset only changes how an instant is
# written, never which instant it is. Florida spans two zones; the French subdivisions
# have their own holidays (Moselle) or none (Paris).
_TIMEZONES: Final[tuple[tuple[str, int, str], ...]] = (
    ("America/New_York", -240, "US-NY"),
    ("America/New_York", -240, "US-FL"),
    ("America/New_York", -240, "US-MD"),
    ("America/Chicago", -300, "US-FL"),
    ("America/Chicago", -300, "US-OK"),
    ("America/Chicago", -300, "US-TX"),
    ("America/Denver", -360, "US-CO"),
    ("America/Los_Angeles", -420, "US-CA"),
    ("America/Los_Angeles", -420, "US-CA"),
    ("America/Toronto", -240, "CA-ON"),
    ("America/Mexico_City", -360, "MX"),
    ("America/Sao_Paulo", -180, "BR"),
    ("Europe/London", 60, "GB"),
    ("Europe/London", 60, "GB"),
    ("Europe/Berlin", 120, "DE"),
    ("Europe/Paris", 120, "FR"),
    ("Europe/Paris", 120, "FR"),
    ("Europe/Paris", 120, "FR-57"),
    ("Europe/Paris", 120, "FR-75C"),
    ("Europe/Madrid", 120, "ES"),
    ("Europe/Warsaw", 120, "PL"),
    ("Asia/Tokyo", 540, "JP"),
    ("Asia/Kolkata", 330, "IN"),
    ("Asia/Singapore", 480, "SG"),
    ("Asia/Shanghai", 480, "CN"),
    ("Australia/Sydney", 600, "AU-NSW"),
    ("Australia/Perth", 480, "AU-WA"),
    ("Australia/Adelaide", 570, "AU-SA"),
)

SENSITIVE_CATEGORIES: Final = ("health", "medical", "adult", "pregnancy", "age_related")
_TOPICS: Final = ("cart_reminders", "stock_alerts", "deals", "recommendations")
_QUIET_HOURS: Final = (
    ("22:00", "07:00"),
    ("20:00", "09:00"),
    ("21:30", "08:30"),
    ("23:00", "06:30"),
    ("00:00", "08:00"),
    ("19:00", "10:00"),
    ("12:00", "13:30"),
    ("09:00", "17:00"),
    # Longer than the whole 08:00-21:00 window: sms, push and calls never find a minute
    # (each such intent would wait past its validity: stale).
    ("07:30", "21:30"),
)

# (category path, relative weight, lowest price, highest price)
_CATEGORIES: Final[tuple[tuple[tuple[str, ...], int, float, float], ...]] = (
    (("apparel", "women"), 12, 15.0, 180.0),
    (("apparel", "men"), 10, 15.0, 160.0),
    (("footwear", "running"), 6, 50.0, 220.0),
    (("home", "bedding"), 7, 25.0, 350.0),
    (("home", "kitchen"), 8, 8.0, 450.0),
    (("furniture", "living_room"), 4, 250.0, 2600.0),
    (("electronics", "audio"), 5, 25.0, 650.0),
    (("electronics", "laptops"), 3, 450.0, 2800.0),
    (("electronics", "phones"), 3, 250.0, 1500.0),
    (("beauty", "skincare"), 7, 8.0, 95.0),
    (("toys", "kids"), 5, 8.0, 140.0),
    (("sports", "outdoor"), 5, 20.0, 900.0),
    (("books", "fiction"), 5, 6.0, 35.0),
    (("jewelry", "watches"), 2, 60.0, 3200.0),
    # sensitive
    (("health", "vitamins"), 3, 6.0, 60.0),
    (("health", "pharmacy"), 2, 4.0, 40.0),
    (("medical", "hearing_aids", "age_related"), 1, 180.0, 2200.0),
    (("home", "age_related", "mobility"), 1, 40.0, 900.0),
    (("pregnancy", "maternity"), 2, 15.0, 140.0),
    (("adult", "wellness"), 1, 12.0, 160.0),
)

_CONSENT_SOURCES: Final[Mapping[str, tuple[str, ...]]] = {
    "email": ("account_signup", "checkout_optin", "newsletter_form", "preference_center"),
    "sms": ("checkout_sms_optin", "sms_keyword", "account_settings"),
    "push": ("app_prompt", "browser_prompt"),
    "phone": ("call_center", "account_settings"),
}
_REVOKE_SOURCES: Final = ("preference_center", "account_settings", "customer_service", "sms_stop")
# Probability that a new customer grants each channel at signup.
_GRANT_RATE: Final = (("email", 0.85), ("sms", 0.35), ("push", 0.3), ("phone", 0.06))
# Where calls meet the shipped jurisdiction rules (weekdays, hours, holidays, caps), more
# shoppers ask for a callback, so that a workload's calls meet weekends and holidays.
_CALL_RULED: Final = frozenset({"US-FL", "US-OK", "US-MD"})
_RULED_PHONE_RATE: Final = 0.4
_CHANNELS: Final = ("email", "sms", "push", "phone")
_UNVERIFIED: Final = ("cookie", "ip_match", "device_graph")


def dumps_line(event: Mapping[str, object]) -> bytes:
    """One event as a newline-terminated JSON line (UTF-8)."""
    return orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE)


def generate(
    customers: int, events: int, seed: int, start: datetime | None = None
) -> Iterator[Event]:
    """Yield exactly `events` event dicts (SPEC §1 shapes), in arrival order: `ts` order
    but for late feedback and redelivered lines (module docstring).

    `customers` is the size of the known-customer population (anonymous
    shoppers come on top); `start` (tz-aware, default `DEFAULT_START`) is the
    simulated instant the workload begins. Memory stays bounded by the
    population and catalog, whatever `events` is.
    """
    if customers < 0 or events < 0:
        raise ValueError("customers and events must be >= 0")
    if start is None:
        start = DEFAULT_START
    if start.tzinfo is None or start.utcoffset() is None:
        raise ValueError("start must be timezone-aware")
    return _Simulation(customers, seed, start).run(events)


def _price(rng: random.Random, lo: float, hi: float) -> float:
    # Log-uniform, ending in .99 like shop prices.
    value = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    return max(1.0, float(round(value))) - 0.01


def _offset_suffix(minutes: int) -> str:
    sign = "+" if minutes >= 0 else "-"
    h, m = divmod(abs(minutes), 60)
    return f"{sign}{h:02d}:{m:02d}"


class _Catalog:
    """Products and their skus; prices and stock change as the workload runs."""

    __slots__ = (
        "by_group",
        "category",
        "expensive",
        "price",
        "product_id",
        "product_of",
        "product_skus",
        "reported",
        "sku_id",
        "stock",
    )

    def __init__(self, rng: random.Random, products: int) -> None:
        self.sku_id: list[str] = []
        self.product_id: list[str] = []
        self.product_of: list[int] = []
        self.category: list[tuple[str, ...]] = []
        self.price: list[float] = []
        self.stock: list[int] = []
        self.reported: list[bool] = []  # has a stock level been published yet
        self.product_skus: list[list[int]] = []
        self.by_group: list[list[int]] = [[] for _ in _CATEGORIES]
        self.expensive: list[int] = []  # products priced at 400 or more
        groups = range(len(_CATEGORIES))
        weights = [w for _, w, _, _ in _CATEGORIES]
        for p in range(products):
            g = rng.choices(groups, weights)[0]
            path, _, lo, hi = _CATEGORIES[g]
            price = _price(rng, lo, hi)
            variants = 1 if rng.random() < 0.8 else rng.randint(2, 3)
            skus: list[int] = []
            for _ in range(variants):
                s = len(self.sku_id)
                self.sku_id.append(f"sku-{s + 1}")
                self.product_id.append(f"prod-{p + 1}")
                self.product_of.append(p)
                self.category.append(path)
                self.price.append(price)
                self.stock.append(rng.randint(6, 240))
                self.reported.append(False)
                skus.append(s)
            self.product_skus.append(skus)
            self.by_group[g].append(p)
            if price >= 400:
                self.expensive.append(p)
        if not self.expensive:
            self.expensive.append(0)


_Line = tuple[int, int, float]  # (sku, qty, price at cart_add)


class _Customer:
    __slots__ = (
        "cart",
        "cart_sid",
        "channels",
        "cid",
        "fixation",
        "gone",
        "interests",
        "local_off",
        "sessions",
        "stamp",
        "sticky_sid",
        "tz",
        "unverified",
    )

    def __init__(self, cid: str) -> None:
        self.cid = cid
        self.tz = 0
        self.local_off = 0  # the customer's UTC offset, for the daily rhythm
        self.stamp: _Stamp = _ZULU  # how this customer's events write `ts`
        self.channels: set[str] = set()
        self.unverified = 0.0  # share of sessions known only by a guessed identity
        self.interests: list[int] = []  # category groups
        self.fixation = -1  # a product the customer keeps coming back to
        self.cart_sid: str | None = None  # session holding the open cart
        self.cart: list[_Line] = []  # its lines
        self.sticky_sid: str | None = None
        self.sessions = 0
        self.gone = False  # erased


class _Visit:
    """One session as seen by the storefront: its id and the identity it carries."""

    __slots__ = ("customer", "ident", "sid", "stamp")

    def __init__(
        self, sid: str, ident: tuple[str, str] | None, customer: _Customer | None, stamp: _Stamp
    ) -> None:
        self.sid = sid
        self.ident = ident  # (customer_id, identity method), None when anonymous
        self.customer = customer  # who is really shopping (None: a stranger)
        self.stamp = stamp

    def event(self, kind: str) -> Event:
        ev: Event = {"event_id": "", "type": kind, "ts": "", "session_id": self.sid}
        ident = self.ident
        if ident is not None:
            ev["customer_id"] = ident[0]
            ev["identity"] = {"method": ident[1]}
        return ev


class _Simulation:
    def __init__(self, customers: int, seed: int, start: datetime) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.t0 = math.ceil(start.timestamp())
        self.population = customers
        products = min(20_000, max(60, customers // 4))
        self.cat = _Catalog(self.rng, products)
        self.customers: list[_Customer | None] = []
        self.heap: list[tuple[int, int, int, Any, Any]] = []
        self.seq = itertools.count()
        self.sessions = itertools.count(1)
        self.orders = itertools.count(1)
        self.arrived = 0
        self.day_prefix: dict[int, str] = {}
        # A few recently carted skus: background inventory noise prefers them.
        self.recent_skus: list[int] = []

    # -- queue -----------------------------------------------------------

    def _push(self, t: int, kind: int, a: Any = None, b: Any = None) -> None:
        heapq.heappush(self.heap, (t, next(self.seq), kind, a, b))

    def _emit(self, t: int, event: Event, stamp: _Stamp = _ZULU) -> None:
        heapq.heappush(self.heap, (t, next(self.seq), _EVENT, event, stamp))

    def _ts(self, t: int, stamp: _Stamp) -> str:
        off, suffix = stamp
        day, sec = divmod(t + off * _MIN, _DAY)
        prefix = self.day_prefix.get(day)
        if prefix is None:
            d = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=day)
            prefix = d.strftime("%Y-%m-%dT")
            self.day_prefix[day] = prefix
        h, rest = divmod(sec, _HOUR)
        m, s = divmod(rest, _MIN)
        return f"{prefix}{h:02d}:{m:02d}:{s:02d}{suffix}"

    def run(self, events: int) -> Iterator[Event]:
        heap = self.heap
        pop = heapq.heappop
        ts = self._ts
        prefix = f"g{self.seed}-"
        if events <= 0:
            return
        self._push(self.t0, _ARRIVALS)
        self._push(self.t0 + int(self.rng.random() * 600), _ANON)
        self._push(self.t0 + int(self.rng.random() * 1800), _INVENTORY)
        n = 0
        ids = 0
        rng = self.rng
        while True:
            t, _, kind, a, b = pop(heap)
            if kind in (_EVENT, _LATE):
                n += 1
                ids += 1
                a["event_id"] = f"{prefix}{ids}"
                a["ts"] = ts(t, b) if kind == _EVENT else ts(b, _ZULU)
                if rng.random() < _REDELIVERY:
                    self._push(t + rng.randint(1, 2 * _HOUR), _REPEAT, dict(a))
                yield a
                if n >= events:
                    return
            elif kind == _REPEAT:
                n += 1
                yield a
                if n >= events:
                    return
            elif kind == _CUSTOMER:
                self._customer_session(t, a)
            elif kind == _ANON:
                self._anonymous_session(t)
            elif kind == _INVENTORY:
                self._inventory_tick(t)
            elif kind == _STORY:
                self._story(t, a, b)
            elif kind == _FEEDBACK:
                self._feedback(t, a, b)
            else:
                self._arrivals(t)

    # -- population ------------------------------------------------------

    def _arrivals(self, t: int) -> None:
        """Bring in the customers whose first visit falls in the next hour."""
        n = self.population
        end = t + _HOUR
        while self.arrived < n:
            first = self.t0 + self.arrived * _ARRIVAL_SPAN // n
            if first >= end:
                break
            self.arrived += 1
            at = max(t, first + int(self.rng.random() * _HOUR))
            self._push(at, _CUSTOMER, self._new_customer())
        if self.arrived < n:
            self._push(end, _ARRIVALS)

    def _new_customer(self) -> _Customer:
        rng = self.rng
        c = _Customer(f"cust-{len(self.customers) + 1}")
        self.customers.append(c)
        c.tz = rng.randrange(len(_TIMEZONES))
        c.local_off = _TIMEZONES[c.tz][1]
        r = rng.random()
        if r < 0.2:
            c.stamp = (c.local_off, _offset_suffix(c.local_off))
        elif r < 0.3:
            c.stamp = _PLUS_ZERO
        r = rng.random()
        c.unverified = 0.0 if r < 0.6 else (0.15 if r < 0.9 else 0.5)
        groups = len(_CATEGORIES)
        c.interests = [rng.randrange(groups) for _ in range(rng.randint(1, 3))]
        return c

    def _next_visit(self, c: _Customer, t: int) -> None:
        rng = self.rng
        r = rng.random()
        if r < 0.2:
            gap = 30 * _MIN + int(rng.random() * 3.5 * _HOUR)
        elif r < 0.45:
            gap = 4 * _HOUR + int(rng.random() * 20 * _HOUR)
        elif r < 0.75:
            gap = _DAY + int(rng.random() * 2 * _DAY)
        else:
            gap = 3 * _DAY + int(rng.random() * 7 * _DAY)
        at = t + gap
        # Most people shop while awake (in their own time zone), not all.
        hour = (at + c.local_off * _MIN) % _DAY // _HOUR
        if hour < 7 and rng.random() < 0.8:
            at += (7 - hour) * _HOUR + int(rng.random() * 3 * _HOUR)
        self._push(at, _CUSTOMER, c)

    # -- consent and preferences -----------------------------------------

    def _grant(self, t: int, c: _Customer, channel: str) -> None:
        rng = self.rng
        ev: Event = {
            "event_id": "",
            "type": "consent_granted",
            "ts": "",
            "customer_id": c.cid,
            "channel": channel,
            "source": rng.choice(_CONSENT_SOURCES[channel]),
        }
        r = rng.random()
        if (channel == "sms" and r < 0.4) or r < 0.06:
            # Promotional opt-ins that lapse: some within hours or days (inside the
            # workload's span, before a reminder is due), some within weeks, some a year on.
            r = rng.random()
            if r < 0.35:
                life = rng.randint(2 * _HOUR, 3 * _DAY)
            elif r < 0.65:
                life = rng.randint(3 * _DAY, 45 * _DAY)
            else:
                life = 365 * _DAY
            ev["expires_at"] = self._ts(t + life, c.stamp)
        c.channels.add(channel)
        self._emit(t, ev, c.stamp)

    def _revoke(self, t: int, c: _Customer, channel: str) -> None:
        c.channels.discard(channel)
        source = "sms_stop" if channel == "sms" else self.rng.choice(_REVOKE_SOURCES[:3])
        self._emit(
            t,
            {
                "event_id": "",
                "type": "consent_revoked",
                "ts": "",
                "customer_id": c.cid,
                "channel": channel,
                "source": source,
            },
            c.stamp,
        )

    def _preferences(self, t: int, c: _Customer, first: bool) -> None:
        rng = self.rng
        ev: Event = {
            "event_id": "",
            "type": "preferences_set",
            "ts": "",
            "customer_id": c.cid,
        }
        region = _TIMEZONES[c.tz][2]
        # Some give where they live and no time zone: the region's zones, all of them.
        region_only = first and rng.random() < 0.15
        if (first and not region_only) or (not first and rng.random() < 0.3):
            ev["timezone"] = _TIMEZONES[c.tz][0]
        if region_only or (first and rng.random() < 0.75) or rng.random() < 0.1:
            # A US shopper sometimes names the country only (it spans six zones).
            ev["region"] = region[:2] if region[:2] == "US" and rng.random() < 0.2 else region
        if rng.random() < (0.2 if first else 0.5):
            ev["topics_opt_out"] = rng.sample(_TOPICS, rng.randint(1, 2))
        if rng.random() < (0.25 if first else 0.4):
            start, end = rng.choice(_QUIET_HOURS)
            ev["quiet_hours"] = {"start": start, "end": end}
        sensitive = [g for g in c.interests if set(_CATEGORIES[g][0]) & set(SENSITIVE_CATEGORIES)]
        if rng.random() < (0.5 if sensitive else 0.04):
            ev["topics_opt_in"] = rng.sample(SENSITIVE_CATEGORIES, rng.randint(1, 2))
        if len(ev) == 4:
            ev["timezone"] = _TIMEZONES[c.tz][0]
        self._emit(t, ev, c.stamp)

    def _signup(self, t: int, c: _Customer) -> int:
        rng = self.rng
        ruled = _TIMEZONES[c.tz][2][:2] == "FR" or _TIMEZONES[c.tz][2] in _CALL_RULED
        for channel, usual in _GRANT_RATE:
            # Callbacks are asked for more where the law sets their hours.
            rate = _RULED_PHONE_RATE if channel == "phone" and ruled else usual
            if rng.random() < rate:
                self._grant(t, c, channel)
                t += 1 + int(rng.random() * 20)
        if rng.random() < 0.7:
            self._preferences(t, c, first=True)
            t += 5 + int(rng.random() * 60)
        return t

    def _consent_churn(self, t: int, c: _Customer) -> int:
        rng = self.rng
        r = rng.random()
        if r < 0.025 and c.channels:
            self._revoke(t, c, rng.choice(sorted(c.channels)))
            t += 2
        elif r < 0.06:
            missing = [ch for ch in _CHANNELS if ch not in c.channels]
            if missing:
                self._grant(t, c, missing[0] if rng.random() < 0.6 else rng.choice(missing))
                t += 2
        elif r < 0.09:
            self._preferences(t, c, first=False)
            t += 2
        return t

    # -- storefront ------------------------------------------------------

    def _product_event(self, kind: str, v: _Visit, sku: int, qty: int) -> Event:
        cat = self.cat
        ev = v.event(kind)
        ev["sku"] = cat.sku_id[sku]
        ev["product_id"] = cat.product_id[sku]
        ev["category"] = list(cat.category[sku])
        ev["price"] = cat.price[sku]
        ev["currency"] = "USD"
        ev["qty"] = qty
        return ev

    def _step(self, t: int) -> int:
        # Think time between clicks: mostly seconds, sometimes minutes.
        r = self.rng.random()
        return t + 4 + int(r * r * 240)

    def _pick_product(self, c: _Customer | None) -> int:
        rng = self.rng
        cat = self.cat
        if c is not None and rng.random() < 0.7:
            group = cat.by_group[c.interests[int(rng.random() * len(c.interests))]]
            if group:
                return group[int(rng.random() * len(group))]
        return int(rng.random() * len(cat.product_skus))

    def _pick_sku(self, product: int) -> int:
        skus = self.cat.product_skus[product]
        return skus[0] if len(skus) == 1 else skus[int(self.rng.random() * len(skus))]

    def _browse(self, t: int, v: _Visit, views: int, fixation: int) -> int:
        """Page and product views; `fixation` (a product) is viewed 3-5 times among them."""
        rng = self.rng
        fixed = 0 if fixation < 0 else rng.randint(3, 5)
        total = views + fixed
        while total:
            t = self._step(t)
            if fixed and rng.random() * total < fixed:
                fixed -= 1
                ev = self._product_event("product_view", v, self._pick_sku(fixation), 1)
            elif rng.random() < 0.35:
                ev = v.event("page_view")
            else:
                sku = self._pick_sku(self._pick_product(v.customer))
                ev = self._product_event("product_view", v, sku, 1)
            self._emit(t, ev, v.stamp)
            total -= 1
        return t

    def _fill_cart(self, t: int, v: _Visit, big: bool) -> tuple[int, list[_Line]]:
        rng = self.rng
        cat = self.cat
        lines: list[_Line] = []
        products = [self._pick_product(v.customer) for _ in range(1 + (rng.random() < 0.45))]
        if rng.random() < 0.2:
            products.append(self._pick_product(v.customer))
        if big:
            products[0] = cat.expensive[int(rng.random() * len(cat.expensive))]
        for p in products:
            sku = self._pick_sku(p)
            for _ in range(1 + (rng.random() < 0.4)):
                t = self._step(t)
                self._emit(t, self._product_event("product_view", v, sku, 1), v.stamp)
            qty = 1 if rng.random() < 0.85 else rng.randint(2, 3)
            t = self._step(t)
            self._emit(t, self._product_event("cart_add", v, sku, qty), v.stamp)
            lines.append((sku, qty, cat.price[sku]))
            if len(self.recent_skus) < 512:
                self.recent_skus.append(sku)
            else:
                self.recent_skus[int(rng.random() * 512)] = sku
        return t, lines

    def _remove(self, t: int, v: _Visit, lines: list[_Line], line: _Line) -> int:
        t = self._step(t)
        self._emit(t, self._product_event("cart_remove", v, line[0], line[1]), v.stamp)
        lines.remove(line)
        return t

    def _purchase(self, t: int, v: _Visit, lines: list[_Line]) -> int:
        rng = self.rng
        cat = self.cat
        t = self._step(t)
        self._emit(t, v.event("checkout_started"), v.stamp)
        t = self._step(t) + 30 + int(rng.random() * 240)
        ev = v.event("purchase")
        ev["order_id"] = f"ord-{next(self.orders)}"
        ev["items"] = [
            {"sku": cat.sku_id[sku], "qty": qty, "price": cat.price[sku]}
            for sku, qty, _ in lines
        ]
        ev["gift"] = rng.random() < 0.15
        self._emit(t, ev, v.stamp)
        for sku, qty, _ in lines:
            cat.stock[sku] = max(0, cat.stock[sku] - qty)
        return t

    def _identify(self, t: int, c: _Customer, sid: str, resume: bool) -> tuple[int, _Visit, bool]:
        """Who the session says it is: a login (verified) or a guessed identity."""
        rng = self.rng
        if c.sessions == 1 or rng.random() >= c.unverified:
            if not resume and rng.random() < 0.4:
                # Browsing before logging in: these events carry no customer_id.
                t = self._browse(t, _Visit(sid, None, c, c.stamp), rng.randint(1, 3), -1)
            method = "email_link" if rng.random() < 0.2 else "login"
            v = _Visit(sid, (c.cid, method), c, c.stamp)
            t = self._step(t)
            self._emit(t, v.event("login"), v.stamp)
            return t, v, True
        method = _UNVERIFIED[int(rng.random() * 3)]
        who = c.cid
        if method != "cookie" and rng.random() < 0.3:
            # A household or device match that names someone else.
            other = self.customers[int(rng.random() * len(self.customers))]
            if other is not None:
                who = other.cid
        return t, _Visit(sid, (who, method), c, c.stamp), False

    def _customer_session(self, t: int, c: _Customer) -> None:
        if c.gone:
            return
        rng = self.rng
        t = self._signup(t, c) if c.sessions == 0 else self._consent_churn(t, c)
        c.sessions += 1

        resume = False
        if c.cart_sid is not None and rng.random() < 0.5:
            resume, sid = True, c.cart_sid
        elif c.sticky_sid is not None and rng.random() < 0.3:
            sid = c.sticky_sid  # the same browser tab, hours later
        else:
            sid = f"sess-{next(self.sessions)}"
        t, v, verified = self._identify(t, c, sid, resume)

        logout = 0.3
        if resume:
            t = self._resume_cart(t, v, verified)
            logout = 0.2 if c.cart_sid is not None else 0.5
        else:
            r = rng.random()
            if r < 0.38:  # browse, often fixated on one product
                fix = -1
                if rng.random() < 0.6:
                    if c.fixation < 0 or rng.random() < 0.5:
                        c.fixation = self._pick_product(c)
                    fix = c.fixation
                t = self._browse(t, v, rng.randint(1, 6), fix)
                if fix >= 0 and verified:
                    self._schedule_feedback(t + 24 * _HOUR, c)
            elif r < 0.65:  # fill a cart and leave it
                t = self._browse(t, v, rng.randint(0, 3), -1)
                # Shoppers who asked for a callback leave big carts more often: the
                # assisted-sale call (cart >= 500) is what their consent is for.
                big = 0.5 if "phone" in c.channels else 0.2
                t, lines = self._fill_cart(t, v, rng.random() < big)
                if rng.random() < 0.15 and len(lines) > 1:
                    t = self._remove(t, v, lines, lines[-1])
                if rng.random() < 0.3:
                    t = self._step(t)
                    self._emit(t, v.event("checkout_started"), v.stamp)
                if verified:
                    self._leave_cart(t, c, sid, lines)
                logout = 0.1
            elif r < 0.88 and verified:  # buy
                t = self._browse(t, v, rng.randint(0, 4), -1)
                t, lines = self._fill_cart(t, v, rng.random() < 0.1)
                t = self._purchase(t, v, lines)
                logout = 0.5
            elif r < 0.93:  # put something in, change their mind
                t, lines = self._fill_cart(t, v, False)
                for line in list(lines):
                    t = self._remove(t, v, lines, line)
            else:  # a quick look
                for _ in range(rng.randint(1, 3)):
                    t = self._step(t)
                    self._emit(t, v.event("page_view"), v.stamp)
        if verified and rng.random() < logout:
            t = self._step(t)
            self._emit(t, v.event("logout"), v.stamp)
            c.sticky_sid = None
        else:
            c.sticky_sid = sid
        if rng.random() < 0.006:
            # Some ask to be forgotten right after leaving a cart (its reminder pending).
            later = rng.randint(_HOUR, 3 * _HOUR) if rng.random() < 0.4 else rng.randint(
                _HOUR, 10 * _DAY)
            self._erase(t + later, c)
            return
        self._next_visit(c, t)

    def _leave_cart(self, t: int, c: _Customer, sid: str, lines: list[_Line]) -> None:
        rng = self.rng
        if c.cart_sid == sid:
            c.cart = c.cart + lines
        else:
            # Any older cart stays abandoned for good; only the latest is resumed.
            c.cart_sid, c.cart = sid, list(lines)
        if lines and rng.random() < 0.35:
            sku = lines[int(rng.random() * len(lines))][0]
            r = rng.random()
            if r < 0.35:
                self._push(t + rng.randint(_HOUR, 40 * _HOUR), _STORY, _LOW, (sku, 0.0))
            elif r < 0.65:
                self._push(t + rng.randint(_HOUR, 12 * _HOUR), _STORY, _SELLOUT, (sku, 0.0))
            else:
                due = t + rng.randint(2 * _HOUR, 48 * _HOUR)
                self._push(due, _STORY, _PRICE_DROP, (sku, 0.0))
        self._schedule_feedback(t + 4 * _HOUR, c)

    def _resume_cart(self, t: int, v: _Visit, verified: bool) -> int:
        """Back to a cart left in this session: buy it, empty it, or add more."""
        rng = self.rng
        c = v.customer
        if c is None:
            return t
        lines = list(c.cart)
        for sku, _, _ in lines[:2]:
            if rng.random() < 0.5:
                t = self._step(t)
                self._emit(t, self._product_event("product_view", v, sku, 1), v.stamp)
        r = rng.random()
        if r < 0.5 and verified and lines:
            t = self._purchase(t, v, lines)
            c.cart_sid, c.cart = None, []
        elif r < 0.65:
            for line in list(lines):
                t = self._remove(t, v, lines, line)
            c.cart_sid, c.cart = None, []
        else:
            t, more = self._fill_cart(t, v, False)
            if verified:
                self._leave_cart(t, c, v.sid, more)
        return t

    def _anonymous_session(self, t: int) -> None:
        rng = self.rng
        v = _Visit(f"sess-{next(self.sessions)}", None, None,
                   _ZULU if rng.random() < 0.8 else _PLUS_ZERO)
        fix = self._pick_product(None) if rng.random() < 0.15 else -1
        end = self._browse(t, v, rng.randint(1, 5), fix)
        if rng.random() < 0.15:
            self._fill_cart(end, v, rng.random() < 0.1)
        # Anonymous sessions start at about 0.3 per known customer per day.
        rate = max(6.0, 0.3 * self.population) / _DAY
        self._push(t + 1 + int(rng.expovariate(rate)), _ANON)

    # -- inventory -------------------------------------------------------

    def _stock_event(self, t: int, sku: int) -> None:
        self.cat.reported[sku] = True
        self._emit(t, {
            "event_id": "",
            "type": "stock_level",
            "ts": "",
            "sku": self.cat.sku_id[sku],
            "available": self.cat.stock[sku],
        })

    def _price_event(self, t: int, sku: int, price: float) -> None:
        # Variants of a product share its price.
        for s in self.cat.product_skus[self.cat.product_of[sku]]:
            self.cat.price[s] = price
        self._emit(t, {
            "event_id": "",
            "type": "price_change",
            "ts": "",
            "sku": self.cat.sku_id[sku],
            "price": price,
            "currency": "USD",
        })

    def _baseline(self, t: int, sku: int) -> bool:
        """Publish a first level (above 3) for a sku never reported; True if it did."""
        if self.cat.reported[sku]:
            return False
        if self.cat.stock[sku] <= 3:
            self.cat.stock[sku] = self.rng.randint(12, 90)
        self._stock_event(t, sku)
        return True

    def _inventory_tick(self, t: int) -> None:
        rng = self.rng
        cat = self.cat
        recent = self.recent_skus
        if recent and rng.random() < 0.3:
            sku = recent[int(rng.random() * len(recent))]
        else:
            sku = int(rng.random() * len(cat.sku_id))
        r = rng.random()
        if r < 0.65:
            if not self._baseline(t, sku):
                cat.stock[sku] = max(0, cat.stock[sku] + rng.randint(-12, 30))
                self._stock_event(t, sku)
        else:
            old = cat.price[sku]
            factor = rng.uniform(0.7, 0.88) if r > 0.95 else rng.uniform(0.93, 1.08)
            price = round(max(0.99, old * factor), 2)
            if price != old:
                self._price_event(t, sku, price)
        per_day = max(8.0, 0.15 * self.population)
        self._push(t + 1 + int(rng.expovariate(per_day / _DAY)), _INVENTORY)

    def _story(self, t: int, story: int, target: tuple[int, float]) -> None:
        rng = self.rng
        sku, old_price = target
        cat = self.cat
        if story in (_LOW, _SELLOUT) and self._baseline(t, sku):
            self._push(t + rng.randint(10 * _MIN, 3 * _HOUR), _STORY, story, (sku, 0.0))
            return
        if story == _LOW:
            if cat.stock[sku] > 3:
                cat.stock[sku] = rng.randint(0, 3)
            else:  # already low: replenish, then maybe fall again later
                cat.stock[sku] = rng.randint(15, 80)
            self._stock_event(t, sku)
        elif story == _SELLOUT:
            cat.stock[sku] = 0
            self._stock_event(t, sku)
            self._push(t + rng.randint(6 * _HOUR, 60 * _HOUR), _STORY, _RESTOCK, (sku, 0.0))
        elif story == _RESTOCK:
            if cat.stock[sku] == 0:
                cat.stock[sku] = rng.randint(4, 120)
            self._stock_event(t, sku)
        elif story == _PRICE_DROP:
            old = cat.price[sku]
            self._price_event(t, sku, round(max(0.99, old * rng.uniform(0.6, 0.88)), 2))
            if rng.random() < 0.5:
                self._push(t + rng.randint(_DAY, 4 * _DAY), _STORY, _PRICE_BACK, (sku, old))
        elif cat.price[sku] < old_price:  # _PRICE_BACK: the promotion ends
            self._price_event(t, sku, old_price)

    # -- feedback and erasure --------------------------------------------

    def _schedule_feedback(self, t: int, c: _Customer) -> None:
        if not c.channels or self.rng.random() < 0.35:
            return
        order = [ch for ch in ("email", "push", "sms") if ch in c.channels]
        channel = order[0] if order else "phone"
        self._push(t + int(self.rng.random() * 2 * _HOUR), _FEEDBACK, c, channel)

    def _feedback_event(self, t: int, c: _Customer, kind: str, channel: str) -> None:
        ev: Event = {
            "event_id": "",
            "type": kind,
            "ts": "",
            "customer_id": c.cid,
            "channel": channel,
        }
        rng = self.rng
        if kind in ("delivered", "opened", "clicked") and rng.random() < _LATE_FEEDBACK:
            # Reported late, in a sender's batch: it reaches the stream after later events.
            self._push(t + rng.randint(5 * _MIN, 6 * _HOUR), _LATE, ev, t)
            return
        self._emit(t, ev)

    def _feedback(self, t: int, c: _Customer, channel: str) -> None:
        if c.gone:
            return
        rng = self.rng
        if rng.random() < 0.04:
            self._feedback_event(t, c, "bounced", channel)
            return
        self._feedback_event(t, c, "delivered", channel)
        if rng.random() < 0.4:
            t += rng.randint(2 * _MIN, 8 * _HOUR)
            self._feedback_event(t, c, "opened", channel)
            if rng.random() < 0.35:
                t += rng.randint(10, 10 * _MIN)
                self._feedback_event(t, c, "clicked", channel)
        r = rng.random()
        if r < 0.06:
            t += rng.randint(_MIN, 12 * _HOUR)
            kind = "unsubscribed" if r < 0.025 else ("complained" if r < 0.04 else "do_not_contact")
            if kind == "do_not_contact" and rng.random() < 0.5:
                channel = "phone"
            self._feedback_event(t, c, kind, channel)

    def _erase(self, t: int, c: _Customer) -> None:
        c.gone = True
        c.cart = []
        self._emit(t, {
            "event_id": "",
            "type": "erase_requested",
            "ts": "",
            "customer_id": c.cid,
        }, c.stamp)
        index = int(c.cid[5:]) - 1
        self.customers[index] = None
        # Someone new signs up, so the population stays the same size.
        self._push(t + self.rng.randint(0, 5 * _DAY), _CUSTOMER, self._new_customer())
