"""Email over SMTP (adapters/smtp.py) against a real aiosmtpd server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tactful.adapters.smtp import Outcome, SmtpConfig, SmtpTransport
from tests.integration.smtp_inbox import SmtpServer, free_port

FROM = "news@shop.example"


def message(n: int) -> bytes:
    return (f"From: {FROM}\r\nTo: x@example.org\r\nSubject: s{n}\r\n"
            f"Message-ID: <m{n}@shop.example>\r\n\r\nbody {n}\r\n").encode()


@pytest.fixture
def server() -> Iterator[SmtpServer]:
    with SmtpServer() as s:
        yield s


def transport(port: int, timeout: float = 5.0) -> SmtpTransport:
    return SmtpTransport(SmtpConfig("127.0.0.1", port, "none", timeout=timeout))


async def test_messages_are_delivered_over_one_reused_connection(server: SmtpServer) -> None:
    smtp = transport(server.port)
    try:
        outcomes = [await smtp.send(FROM, f"ana{n}@example.org", message(n)) for n in range(5)]
    finally:
        await smtp.close()
    assert outcomes == [Outcome("delivered", 250)] * 5
    assert server.inbox.connections == 1
    assert [m.recipients for m in server.inbox.mails] == [
        [f"ana{n}@example.org"] for n in range(5)]
    assert [m.message["Subject"] for m in server.inbox.mails] == [f"s{n}" for n in range(5)]
    assert server.inbox.mails[0].envelope_from == FROM


async def test_a_refused_recipient_is_bounced_on_5xx_and_temporary_on_4xx(
        server: SmtpServer) -> None:
    server.inbox.refuse["gone@example.org"] = "550 5.1.1 no such user"
    server.inbox.later_times["full@example.org"] = 1
    smtp = transport(server.port)
    try:
        assert await smtp.send(FROM, "gone@example.org", message(1)) == Outcome("bounced", 550)
        assert await smtp.send(FROM, "full@example.org", message(2)) == Outcome(
            "temporary", 451)
        # the connection carries on after a refusal, and the second try passes
        assert await smtp.send(FROM, "full@example.org", message(3)) == Outcome(
            "delivered", 250)
    finally:
        await smtp.close()
    assert server.inbox.connections == 1
    assert [m.message["Subject"] for m in server.inbox.mails] == ["s3"]


async def test_a_refused_message_is_bounced_or_temporary_by_its_code(server: SmtpServer) -> None:
    server.inbox.refuse_data["spam@example.org"] = "554 5.7.1 rejected"
    server.inbox.refuse_data["slow@example.org"] = "452 4.3.1 insufficient storage"
    smtp = transport(server.port)
    try:
        assert await smtp.send(FROM, "spam@example.org", message(1)) == Outcome("bounced", 554)
        assert await smtp.send(FROM, "slow@example.org", message(2)) == Outcome(
            "temporary", 452)
    finally:
        await smtp.close()
    assert server.inbox.mails == []


async def test_a_connection_lost_during_data_is_unknown(server: SmtpServer) -> None:
    server.inbox.drop_during_data.add("lost@example.org")
    smtp = transport(server.port)
    try:
        assert (await smtp.send(FROM, "lost@example.org", message(1))).result == "unknown"
        # the next message opens a new connection
        assert await smtp.send(FROM, "ana@example.org", message(2)) == Outcome("delivered", 250)
    finally:
        await smtp.close()
    assert server.inbox.connections == 2


async def test_a_connection_the_server_closed_is_reopened(server: SmtpServer) -> None:
    smtp = transport(server.port)
    try:
        assert (await smtp.send(FROM, "ana@example.org", message(1))).result == "delivered"
        assert smtp._client is not None and smtp._client.transport is not None
        smtp._client.transport.close()  # as an idle timeout of the server would
        await asyncio.sleep(0.05)
        assert (await smtp.send(FROM, "ana@example.org", message(2))).result == "delivered"
    finally:
        await smtp.close()
    assert len(server.inbox.mails) == 2


async def test_no_server_is_unavailable() -> None:
    smtp = transport(free_port(), timeout=2.0)
    assert await smtp.send(FROM, "ana@example.org", message(1)) == Outcome("unavailable")
    await smtp.close()


async def test_a_server_that_does_not_answer_times_out_as_unavailable() -> None:
    import socket

    with socket.socket() as silent:  # accepts, never greets
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        smtp = transport(silent.getsockname()[1], timeout=1.0)
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await smtp.send(FROM, "ana@example.org", message(1)) == Outcome("unavailable")
        assert loop.time() - started < 3.0
        await smtp.close()
