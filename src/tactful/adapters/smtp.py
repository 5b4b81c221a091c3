"""Email over SMTP with aiosmtplib: one connection, reused from message to message.

A message is sent as its own SMTP transaction (MAIL, RCPT, DATA), so that the step
that failed says what became of the message (``core.sending.Result``): before DATA
nothing was sent (a dropped connection is reopened once and the message tried again;
a refusal of the recipient is ``temporary`` on 4xx, ``bounced`` on 5xx); the server's
answer to DATA is ``delivered``, ``temporary`` or ``bounced``; a connection lost or a
timeout during DATA is ``unknown`` (the server may have taken the message).

Nothing here logs an address: a refusal is logged with its SMTP code only.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from typing import Literal

import aiosmtplib

from tactful.core.sending import Result

log = logging.getLogger("tactful.sender.smtp")

Tls = Literal["none", "starttls", "tls"]


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    host: str = "127.0.0.1"
    port: int = 587
    tls: Tls = "starttls"
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0  # seconds for the connection and for each command
    ca_file: str | None = None  # the server's CA (default: the system's)


@dataclass(frozen=True, slots=True)
class Outcome:
    result: Result
    code: int | None = None  # the SMTP reply code, when the server answered


def _code_result(code: int) -> Result:
    return "temporary" if 400 <= code < 500 else "bounced"


class SmtpTransport:
    """Sends one message at a time over a reused connection."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self._client: aiosmtplib.SMTP | None = None

    def _new_client(self) -> aiosmtplib.SMTP:
        c = self.config
        context = None
        if c.tls != "none":
            context = ssl.create_default_context(cafile=c.ca_file)
        return aiosmtplib.SMTP(
            hostname=c.host, port=c.port, username=c.username, password=c.password,
            timeout=c.timeout, use_tls=c.tls == "tls", start_tls=c.tls == "starttls",
            tls_context=context,
        )

    async def _connected(self) -> aiosmtplib.SMTP:
        if self._client is not None and self._client.is_connected:
            return self._client
        await self.close()
        client = self._new_client()
        await client.connect()  # greeting, EHLO, STARTTLS and login as configured
        self._client = client
        return client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is None or not client.is_connected:
            return
        try:
            await client.quit()
        except (aiosmtplib.SMTPException, OSError):
            client.close()

    async def send(self, sender: str, recipient: str, message: bytes) -> Outcome:
        """One message to one recipient (``sender`` is the envelope sender)."""
        for attempt in (1, 2):
            try:
                client = await self._connected()
            except aiosmtplib.SMTPResponseException as exc:  # refused greeting or login
                await self._drop()
                log.warning("SMTP server refused the connection", extra={"code": exc.code})
                return Outcome("unavailable", exc.code)
            except (aiosmtplib.SMTPException, OSError) as exc:
                await self._drop()
                log.warning("SMTP server unavailable", extra={"error": type(exc).__name__})
                return Outcome("unavailable")
            try:
                await client.mail(sender)
                await client.rcpt(recipient)
            except aiosmtplib.SMTPSenderRefused as exc:
                await self._reset()
                log.warning("SMTP server refused the sender", extra={"code": exc.code})
                return Outcome("unavailable", exc.code)
            except aiosmtplib.SMTPResponseException as exc:
                await self._reset()
                return Outcome(_code_result(exc.code), exc.code)
            except (aiosmtplib.SMTPException, OSError) as exc:
                # The connection was closed (an idle one the server dropped) or timed
                # out before DATA: nothing was sent. Open a new one, once.
                await self._drop()
                if attempt == 2:
                    log.warning("SMTP server unavailable", extra={"error": type(exc).__name__})
                    return Outcome("unavailable")
                continue
            try:
                response = await client.data(message)
            except aiosmtplib.SMTPResponseException as exc:
                return Outcome(_code_result(exc.code), exc.code)
            except (aiosmtplib.SMTPException, OSError) as exc:
                await self._drop()
                log.warning("SMTP connection lost during DATA: outcome unknown",
                            extra={"error": type(exc).__name__})
                return Outcome("unknown")
            return Outcome("delivered", response.code)
        raise AssertionError("unreachable")

    async def _reset(self) -> None:
        """End a refused transaction so the connection can carry the next message."""
        if self._client is None:
            return
        try:
            await self._client.rset()
        except (aiosmtplib.SMTPException, OSError):
            await self._drop()

    async def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()
