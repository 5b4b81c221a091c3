"""The shopper's pages (SPEC §7) on a listener of their own, the only one meant to face
the internet: ``/u/{token}`` (RFC 8058 one-click unsubscribe) and ``/p/{token}`` (the
preference center). Nothing else is served here: ``/metrics``, the probes and the admin
API stay on the worker's web port.

The handlers verify the link, read the customer's choices through ``choices`` (the worker
reads its own table, or asks the owner of the customer's partition), produce the events a
page asks for through ``produce`` and answer only once the broker has acknowledged them.
No cookie is set or read; the access log is off (every path holds a token, and a token
names a customer to whoever holds the secret).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import msgspec
import orjson
from aiohttp import web

from tactful.core import pages
from tactful.core.errors import TransientError
from tactful.core.links import Expired, LinkClaims, LinkSigner, Verified
from tactful.core.preferences import (
    NEVER,
    OFF,
    ON,
    Change,
    Choices,
    FormError,
    Submitted,
    changes,
    parse_form,
    unsubscribe,
)

log = logging.getLogger("tactful.public")

MAX_BODY = 16 * 1024  # bytes of a form: the preference form is well under 1 KiB
HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": pages.CSP,
}


class Unavailable(Exception):
    """The customer's choices cannot be read now (the group is moving partitions)."""


NOT_HELD = None  # what ``choices`` answers for a customer tactful holds nothing about

RETRY_WINDOW = 60.0  # a mailbox provider's retries of one one-click within this are one event
RECENT_CLICKS = 10_000  # links remembered before the stale ones are dropped

ChoicesReader = Callable[[LinkClaims, str], Awaitable[Choices | None]]
Producer = Callable[[list[tuple[bytes, bytes]]], Awaitable[None]]


def page(body: bytes, status: int = 200, **extra: str) -> web.Response:
    return web.Response(body=body, status=status, headers={**HEADERS, **extra})


@dataclass(slots=True)
class PublicPages:
    signer: LinkSigner
    choices: ChoicesReader
    produce: Producer
    consent_topic: str
    clock: Callable[[], float] = time.time
    # (intent id, channel) -> when its one-click unsubscribe first came, for RETRY_WINDOW.
    _first_click: dict[tuple[str, str], float] = field(default_factory=dict, init=False,
                                                       repr=False)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self._errors])
        # At the root, and under the public URL's path for a proxy that passes it on.
        prefix = urlsplit(self.signer.public_url).path.rstrip("/")
        for base in ("", prefix) if prefix else ("",):
            app.router.add_route("*", base + "/u/{token}", self.unsubscribe)
            app.router.add_route("*", base + "/p/{token}", self.preferences)
        return app

    @web.middleware
    async def _errors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except web.HTTPRequestEntityTooLarge:
            return page(pages.plain("Too large", "That request is larger than a form can be."),
                        413)
        except web.HTTPNotFound:
            return page(pages.plain("Not found", "There is no page here."), 404)
        except web.HTTPMethodNotAllowed:
            return page(pages.plain("Not allowed", "This page does not take that method."), 405)

    def _verify(self, request: web.Request, purpose: str) -> LinkClaims | web.Response:
        if request.method not in ("GET", "HEAD", "POST"):
            return page(pages.plain("Not allowed", "This page does not take that method."), 405,
                        Allow="GET, HEAD, POST")
        token = request.match_info["token"]
        verdict = self.signer.verify(token, purpose, self.clock())  # type: ignore[arg-type]
        if isinstance(verdict, Verified):
            return verdict.claims
        if isinstance(verdict, Expired):
            return page(pages.expired(), 410)
        return page(pages.refused(), 403)

    async def _send(self, events: list[Change], customer_id: str) -> None:
        key = customer_id.encode()
        await self.produce([(key, event_bytes(e)) for e in events])

    # ------------------------------------------------------------- /u/{token}

    async def unsubscribe(self, request: web.Request) -> web.Response:
        claims = self._verify(request, "unsubscribe")
        if isinstance(claims, web.Response):
            return claims
        if request.method != "POST":
            action = f"{self.signer.public_url}/u/{request.match_info['token']}"
            return page(pages.unsubscribe_confirm(claims.channel, action))
        form = await request.post()
        if form.getall("List-Unsubscribe", []) != ["One-Click"]:
            return page(pages.plain("Not understood",
                                    "An unsubscribe request carries List-Unsubscribe=One-Click."),
                        400)
        event = unsubscribe(claims.customer_id, claims.channel,  # type: ignore[arg-type]
                            claims.intent_id, self._first(claims, self.clock()))
        try:
            await self._send([event], claims.customer_id)
        except TransientError:
            return page(pages.unavailable(), 503, **{"Retry-After": "5"})
        log.info("one-click unsubscribe", extra={"channel": claims.channel})
        return page(pages.unsubscribed(claims.channel))

    def _first(self, claims: LinkClaims, now: float) -> float:
        """When this link's one-click first came, if within ``RETRY_WINDOW`` of ``now``.
        A retry then carries the first request's time, so it is the same event even across
        a minute's boundary; another process (or a restart) falls back on the minute
        alone."""
        recent = self._first_click
        if len(recent) > RECENT_CLICKS:
            for k in [k for k, t in recent.items() if now - t >= RETRY_WINDOW]:
                del recent[k]
        key = (claims.intent_id, claims.channel)
        first = recent.get(key)
        if first is None or not 0 <= now - first < RETRY_WINDOW:
            recent[key] = first = now
        return first

    # ------------------------------------------------------------- /p/{token}

    async def preferences(self, request: web.Request) -> web.Response:
        claims = self._verify(request, "preferences")
        if isinstance(claims, web.Response):
            return claims
        token = request.match_info["token"]
        action = f"{self.signer.public_url}/p/{token}"  # as the proxy in front exposes it
        form_token = self.signer.form_token(token)
        if request.method == "POST":
            form = await request.post()
            if not self.signer.form_token_ok(token, str(form.get("form_token", ""))) \
                    or not self._same_origin(request):
                return page(pages.refused(), 403)
        try:
            current = await self.choices(claims, token)
        except Unavailable:
            return page(pages.unavailable(), 503, **{"Retry-After": "1"})
        if current is NOT_HELD:
            return page(pages.nothing_held())
        if request.method != "POST":
            return page(pages.preference_center(current, action, form_token))
        fields: dict[str, list[str]] = {}
        for name, value in form.items():
            fields.setdefault(name, []).append(str(value))
        try:
            wanted = parse_form(fields)
        except FormError as exc:
            return page(pages.preference_center(current, action, form_token, error=str(exc)),
                        400)
        events = changes(current, wanted, claims.customer_id, self.clock(), token)
        try:
            await self._send(events, claims.customer_id)
        except TransientError:
            return page(pages.unavailable(), 503, **{"Retry-After": "5"})
        log.info("preferences saved", extra={"events": len(events)})
        return page(pages.preference_center(applied(current, wanted), action, form_token,
                                            saved=True))

    def _same_origin(self, request: web.Request) -> bool:
        """A browser's ``Origin`` on a form post, when it sends one, is the public URL's."""
        origin = request.headers.get("Origin")
        if origin is None or origin == "null":  # "null": sent under Referrer-Policy no-referrer
            return True
        want = urlsplit(self.signer.public_url)
        got = urlsplit(origin)
        return (got.scheme, got.netloc) == (want.scheme, want.netloc)


def event_bytes(event: Change) -> bytes:
    """An event as a producer would write it: the fields it has, none as null."""
    fields = msgspec.to_builtins(event)
    return orjson.dumps({k: v for k, v in fields.items() if v is not None})


def applied(current: Choices, wanted: Submitted) -> Choices:
    """The choices once the events of ``changes`` are applied (the page shown after a
    save: the worker applies them a moment later)."""
    channels = tuple(
        (c, state if state == NEVER else (ON if c in wanted.channels_on else OFF))
        for c, state in current.channels)
    return Choices(channels, wanted.topics_off, wanted.quiet or current.quiet,
                   wanted.timezone or current.timezone, wanted.region or current.region)


class Listener:
    """The public listener's aiohttp server (started and stopped with the worker)."""

    def __init__(self, pages_: PublicPages, host: str, port: int) -> None:
        self.pages = pages_
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        self._runner = web.AppRunner(self.pages.app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
