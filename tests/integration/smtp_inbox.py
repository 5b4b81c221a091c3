"""A real SMTP server on loopback (aiosmtpd, in a thread of the test process) that keeps
what it receives, and answers as a test tells it to."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Received:
    envelope_from: str
    recipients: list[str]
    message: EmailMessage
    at: float  # wall clock when the DATA was accepted


@dataclass
class Inbox:
    """The handler: RCPT and DATA answers by recipient address."""

    refuse: dict[str, str] = field(default_factory=dict)  # address -> reply to RCPT
    refuse_data: dict[str, str] = field(default_factory=dict)  # address -> reply to DATA
    later_times: dict[str, int] = field(default_factory=dict)  # 451 this many times first
    drop_during_data: set[str] = field(default_factory=set)  # close the connection
    data_delay: float = 0.0
    mails: list[Received] = field(default_factory=list)
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        with self.lock:
            if address in self.refuse:
                return self.refuse[address]
            if self.later_times.get(address, 0) > 0:
                self.later_times[address] -= 1
                return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        rcpt = envelope.rcpt_tos[0]
        if rcpt in self.drop_during_data:
            assert server.transport is not None
            server.transport.close()
            return "421 closing"
        if rcpt in self.refuse_data:
            return self.refuse_data[rcpt]
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        content = envelope.original_content or envelope.content
        assert isinstance(content, bytes)
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self.lock:
            self.mails.append(Received(str(envelope.mail_from), list(envelope.rcpt_tos),
                                       message, time.time()))
        return "250 OK queued"

    def by_message_id(self) -> dict[str, list[Received]]:
        out: dict[str, list[Received]] = {}
        with self.lock:
            for mail in self.mails:
                out.setdefault(str(mail.message["Message-ID"]), []).append(mail)
        return out


class _Counting(Controller):
    def factory(self) -> SMTP:
        inbox = self.handler
        assert isinstance(inbox, Inbox)
        with inbox.lock:
            inbox.connections += 1
        return SMTP(self.handler, **self.SMTP_kwargs)


class SmtpServer:
    def __init__(self, inbox: Inbox | None = None, **kwargs: Any) -> None:
        self.inbox = inbox or Inbox()
        self.port = free_port()
        self.controller = _Counting(self.inbox, hostname="127.0.0.1", port=self.port,
                                    **kwargs)

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        with self.inbox.lock:  # the controller's own check that the server is up
            self.inbox.connections = 0
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()
