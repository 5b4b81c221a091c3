"""The demo's SMTP inbox: an aiosmtpd server on loopback, in a thread of the demo, that
keeps what it is sent and refuses the addresses it is told to (5xx)."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
import time
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


class _Handler:
    def __init__(self, refuse: dict[str, str]) -> None:
        self.refuse = refuse
        self.mails: list[tuple[str, EmailMessage]] = []
        self.refused: list[str] = []
        self.lock = threading.Lock()

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if address in self.refuse:
            with self.lock:
                if address not in self.refused:
                    self.refused.append(address)
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content
        if not isinstance(content, bytes):
            return "554 5.6.0 no content"
        message = email.message_from_bytes(content, policy=email.policy.default)
        if isinstance(message, EmailMessage):
            with self.lock:
                self.mails.extend((rcpt, message) for rcpt in envelope.rcpt_tos)
        return "250 OK queued"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Inbox:
    def __init__(self, refuse: dict[str, str]) -> None:
        self._handler = _Handler(refuse)
        self.port = _free_port()
        self._controller = Controller(self._handler, hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> Inbox:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()

    def wait(self, count: int, timeout: float) -> list[tuple[str, EmailMessage]]:
        """The mails received, once ``count`` recipients were answered (delivered or
        refused) or ``timeout`` seconds passed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._handler.lock:
                if len(self._handler.mails) + len(self._handler.refused) >= count:
                    break
            time.sleep(0.2)
        with self._handler.lock:
            return list(self._handler.mails)

    def refused(self) -> list[str]:
        with self._handler.lock:
            return list(self._handler.refused)
