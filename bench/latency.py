"""Latency of the tactful worker (wall clock, at least once, one worker), for ``compare.py``.

(a) **Immediate trigger** — ``low_stock`` (SPEC §3: a carted sku's ``available`` falls to
    ≤ 3 from above 3). Set-up, all at once: ``samples`` customers, each with email
    consent, a verified session (``login``) and a cart holding a sku of its own whose
    stock is 10. Once the worker is idle (input lag 0, quiet), one ``stock_level`` of 2
    per sku at ``rate`` per second; a sample is the time from just before sending that
    record to the ``low_stock`` intent read from ``<prefix>intents``. Email is the only
    consented channel, and email is not held to quiet hours, so the intent is immediate.
(b) **Timer** — ``abandoned_cart`` under a policy whose delay is ``delay`` seconds (the
    packaged policy otherwise). ``samples`` other customers, each with email consent, a
    login and a ``cart_add`` stamped with the wall clock, at ``rate`` per second; a
    sample is the time from the cart's due time (``cart_add`` ts + delay) to its intent
    on the topic. ``TACTFUL_TICK_SECONDS`` (the worker's tick interval, default 1) is
    recorded with the figures.

With ``load`` > 0, other inputs are produced meanwhile at ``load`` events/s (the issue
asks for half the measured maximum rate): verified sessions of customers without
consent viewing products (storefront → session → customer, nothing to send), from 3 s
before (a) is paced until (b) is measured; the rate reached is recorded.

The (a) customers opt out of ``cart_reminders``, and the delay is longer than phase (a),
so their own carts' timers fire (suppressed) after (a) is measured and before (b) is.
Every customer is new (frequency caps: one intent per 16 h).
"""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from backlog import INPUTS, OUTPUTS, create_topics, delete_topics, end_offsets
from done_rule import wait_done
from procs import Proc, free_port, stop, tactful_worker, tag

SKU_STOCK, SKU_LOW = 10, 2


@dataclass
class Samples:
    sent: dict[str, float] = field(default_factory=dict)  # customer_id: start of the wait
    got: dict[str, float] = field(default_factory=dict)  # customer_id: latency, s

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.got.values())
        if not lat:
            return {"samples": 0, "missing": len(self.sent)}
        cuts = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) > 1 else lat * 99
        return {"samples": len(lat), "missing": len(self.sent) - len(lat),
                "p50_ms": 1000 * statistics.median(lat), "p99_ms": 1000 * cuts[98],
                "min_ms": 1000 * lat[0], "max_ms": 1000 * lat[-1]}


def policy_with_delay(delay: int, path: Path) -> Path:
    """The packaged policy with ``abandoned_cart``'s delay set to ``delay`` seconds."""
    text = resources.files("tactful.policy").joinpath("default.toml").read_text()
    text, n = re.subn(r'(\[triggers\.abandoned_cart\]\ndelay = )"[^"]*"', rf'\1"{delay}s"',
                      text)
    if n != 1:
        raise SystemExit("packaged policy: no [triggers.abandoned_cart] delay to shorten")
    text = re.sub(r'^version = "[^"]*"', 'version = "bench-latency"', text, flags=re.M)
    path.write_text(text)
    return path


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


class Events:
    """Input events for one customer of a latency run, stamped with the wall clock."""

    def __init__(self, run: str, who: str) -> None:
        self.customer = f"lat-{run}-{who}"
        self.session = f"sess-{run}-{who}"
        self.sku = f"sku-{run}-{who}"
        self._n = 0

    def _event(self, type_: str, **fields: Any) -> tuple[str, bytes, bytes]:
        self._n += 1
        event = {"event_id": f"{self.customer}-{self._n}", "type": type_,
                 "ts": iso(fields.pop("t", time.time())), **fields}
        topic = {"stock_level": "inventory", "consent_granted": "consent",
                 "preferences_set": "consent"}.get(type_, "storefront")
        key = {"inventory": self.sku, "consent": self.customer}.get(topic, self.session)
        return topic, key.encode(), orjson.dumps(event)

    def consent(self) -> tuple[str, bytes, bytes]:
        return self._event("consent_granted", customer_id=self.customer, channel="email",
                           source="bench")

    def opt_out_reminders(self) -> tuple[str, bytes, bytes]:
        return self._event("preferences_set", customer_id=self.customer,
                           topics_opt_out=["cart_reminders"])

    def stock(self, available: int) -> tuple[str, bytes, bytes]:
        return self._event("stock_level", sku=self.sku, available=available)

    def login(self) -> tuple[str, bytes, bytes]:
        return self._event("login", session_id=self.session, customer_id=self.customer,
                           identity={"method": "login"})

    def cart_add(self, t: float) -> tuple[str, bytes, bytes]:
        return self._event("cart_add", t=t, session_id=self.session, customer_id=self.customer,
                           identity={"method": "login"}, sku=self.sku, product_id="prod-bench",
                           category=["home"], price=25.0, currency="USD", qty=1)


class Load:
    """Background inputs at ``rate`` events/s: logins, then product views, of ``sessions``
    verified sessions whose customers gave no consent (each view crosses to the
    customer scope and decides nothing)."""

    def __init__(self, run: str, rate: float, sessions: int = 2000) -> None:
        self.run, self.rate, self.sessions = run, rate, sessions
        self.sent = 0
        self.seconds = 0.0

    def event(self, n: int) -> tuple[str, bytes, bytes]:
        who = n % self.sessions
        customer, session = f"load-{self.run}-{who}", f"sess-load-{self.run}-{who}"
        fields: dict[str, Any] = {"session_id": session, "customer_id": customer,
                                  "identity": {"method": "login"}}
        if n < self.sessions:
            type_ = "login"
        else:
            type_ = "product_view"
            fields.update(sku=f"sku-load-{n % 97}", product_id=f"prod-load-{n % 97}",
                          category=["home"], price=19.0, currency="USD", qty=1)
        event = {"event_id": f"{session}-{n}", "type": type_, "ts": iso(time.time()), **fields}
        return "storefront", session.encode(), orjson.dumps(event)

    async def run_until(self, stop: asyncio.Event, bootstrap: str, prefix: str) -> None:
        """On a producer of its own (batching as a storefront's would), so the samples'
        records never queue behind the load's."""
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks=1)
        await producer.start()
        try:
            start = time.monotonic()
            while not stop.is_set():
                due = int((time.monotonic() - start) * self.rate)
                pending = []
                for n in range(self.sent, due):
                    topic, key, value = self.event(n)
                    pending.append(await producer.send(prefix + topic, value, key=key))
                self.sent = max(self.sent, due)
                if pending:
                    await asyncio.gather(*pending)
                await asyncio.sleep(0.02)
            self.seconds = time.monotonic() - start
        finally:
            await producer.stop()

    def summary(self) -> dict[str, Any]:
        return {"load_per_s": self.rate, "load_sent": self.sent,
                "load_reached_per_s": self.sent / self.seconds if self.seconds else 0.0}


async def measure(bootstrap: str, workdir: Path, samples: int = 200, rate: float = 20.0,
                  delay: int = 30, partitions: int = 4, load: float = 0.0) -> dict[str, Any]:
    run = tag()
    prefix = f"b{run}."
    policy = policy_with_delay(delay, workdir / f"latency-{run}.toml")
    env = {"TACTFUL_BOOTSTRAP": bootstrap, "TACTFUL_APP_ID": f"bench-{run}",
           "TACTFUL_TOPIC_PREFIX": prefix, "TACTFUL_PARTITIONS": str(partitions),
           "TACTFUL_CLOCK": "wall", "TACTFUL_PROCESSING_GUARANTEE": "at_least_once",
           "TACTFUL_STORE": "memory://", "TACTFUL_DATA_DIR": str(workdir / f"data-{run}"),
           "TACTFUL_WEB_PORT": str(free_port()), "TACTFUL_LOG_LEVEL": "warning",
           "TACTFUL_POLICY": str(policy)}
    await create_topics(bootstrap, [prefix + t for t in (*INPUTS, *OUTPUTS)], partitions)
    worker = tactful_worker({**os.environ, **env}, workdir / f"latency-{run}.log",
                            "tactful worker (latency)")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks="all")
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    immediate, timer = Samples(), Samples()
    background = Load(run, load)
    stop_load = asyncio.Event()
    loading: asyncio.Task[None] | None = None
    try:
        await producer.start()
        await reader.start()
        tps = [TopicPartition(prefix + "intents", p) for p in range(partitions)]
        reader.assign(tps)
        await reader.seek_to_beginning(*tps)
        collect = asyncio.create_task(_collect(reader, immediate, timer))

        async def send(event: tuple[str, bytes, bytes]) -> None:
            topic, key, value = event
            await producer.send(prefix + topic, value, key=key)

        # (a) set-up, then wait until the worker has applied it all.
        a = [Events(run, f"a{i}") for i in range(samples)]
        for e in a:
            for event in (e.consent(), e.opt_out_reminders(), e.stock(SKU_STOCK), e.login(),
                          e.cart_add(time.time())):
                await send(event)
        await producer.flush()
        inputs = await end_offsets(bootstrap, (prefix + t for t in INPUTS), partitions)
        await wait_done(bootstrap, env["TACTFUL_APP_ID"], prefix, inputs, partitions, None,
                        [worker], timeout=180)
        if load:
            loading = asyncio.create_task(background.run_until(stop_load, bootstrap, prefix))
            await asyncio.sleep(3.0)  # the worker at that rate before the first sample
        # (a) the stock drops, paced.
        start = time.monotonic()
        for i, e in enumerate(a):
            await _pace(start, i, rate, worker)
            immediate.sent[e.customer] = time.time()
            await send(e.stock(SKU_LOW))
            await producer.flush()
        await _until(lambda: len(immediate.got) == samples, 15, worker)

        # (b) carts whose timers come due `delay` seconds after their cart_add, paced.
        b = [Events(run, f"b{i}") for i in range(samples)]
        start = time.monotonic()
        for i, e in enumerate(b):
            await _pace(start, i, rate, worker)
            t = round(time.time(), 3)
            for event in (e.consent(), e.login(), e.cart_add(t)):
                await send(event)
            timer.sent[e.customer] = t + delay
            await producer.flush()
        await _until(lambda: len(timer.got) == samples, delay + 20, worker)
        stop_load.set()
        if loading is not None:
            await loading
        collect.cancel()
    finally:
        if loading is not None and not loading.done():
            loading.cancel()
        await producer.stop()
        await reader.stop()
        stop([worker])
        await delete_topics(bootstrap, run)
    tick = float(os.environ.get("TACTFUL_TICK_SECONDS") or 1.0)
    return {"immediate_low_stock": immediate.summary(), "timer_abandoned_cart": timer.summary(),
            "rate_per_s": rate, "timer_delay_s": delay, "tick_s": tick,
            **background.summary()}


async def _collect(reader: AIOKafkaConsumer, immediate: Samples, timer: Samples) -> None:
    while True:
        batches = await reader.getmany(timeout_ms=100)
        now = time.time()
        for records in batches.values():
            for record in records:
                intent = orjson.loads(record.value)
                who = intent.get("customer_id")
                if intent.get("kind") == "low_stock" and who in immediate.sent:
                    immediate.got.setdefault(who, now - immediate.sent[who])
                elif intent.get("kind") == "abandoned_cart" and who in timer.sent:
                    timer.got.setdefault(who, now - timer.sent[who])


async def _pace(start: float, i: int, rate: float, worker: Proc) -> None:
    worker.check()
    wait = start + i / rate - time.monotonic()
    if wait > 0:
        await asyncio.sleep(wait)


async def _until(condition: Any, timeout: float, worker: Proc) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        worker.check()
        await asyncio.sleep(0.1)
    if not condition():
        print(f"latency: some intents did not arrive within {timeout:.0f} s", flush=True)

