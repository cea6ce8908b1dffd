"""Fixtures and helpers of the notification tests: people with contact details, a real local SMTP
server (aiosmtpd) and a real local HTTP SMS gateway, and the outbox events a change wrote."""

from __future__ import annotations

import email
import email.policy
import json
import threading
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import msgspec
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Session
from aiosmtpd.smtp import Envelope as SmtpEnvelope

from channels import notify
from identity import store as identity_store
from identity.registration import PersonalData
from onewindow.db import Connection
from onewindow.events import Envelope
from onewindow.settings import Settings
from tests.conftest import free_port

__all__ = [
    "GatewayReceiver",
    "MailReceiver",
    "events_of",
    "make_due",
    "make_person",
    "notify_configured",
    "notify_gateway",
    "notify_smtp",
    "rows_of",
]


async def make_person(
    conn: Connection,
    settings: Settings,
    *,
    name: str = "王小明",
    email: str | None = None,
    email_verified: bool = True,
    phone: str | None = None,
    phone_verified: bool = True,
    locale: str = "zh",
) -> str:
    """A person as identity stores one (the phone encrypted and hashed); returns the subject."""
    person_id = uuid.uuid4()
    personal = PersonalData(settings.master_secret)
    row = await identity_store.insert_person(
        conn,
        person_id=person_id,
        username=f"p-{person_id.hex[:12]}",
        display_name=name,
        email=email,
        email_verified=email_verified,
        phone_hash=personal.phone_hash(phone) if phone else None,
        phone_enc=personal.seal_phone(person_id, phone) if phone else None,
        phone_verified=phone is not None and phone_verified,
        locale=locale,
    )
    assert row is not None
    return str(person_id)


async def events_of(conn: Connection, topic: str) -> list[Envelope]:
    """The events this test's transaction published on `topic`, as the drainer hands them over."""
    rows = await conn.fetch(
        "SELECT id, topic, occurred_at, payload FROM onewindow.outbox WHERE topic = $1 ORDER BY seq", topic
    )
    return [
        Envelope(id=r["id"], topic=r["topic"], occurred_at=r["occurred_at"], payload=r["payload"], attempt=1)
        for r in rows
    ]


async def rows_of(conn: Connection, **where: Any) -> list[dict[str, Any]]:
    """channels.notifications rows matching every `column=value` (columns are this test's own)."""
    rows = await conn.fetch("SELECT * FROM channels.notifications ORDER BY created_at, id")
    found = [dict(r) for r in rows]
    return [r for r in found if all(r[k] == v for k, v in where.items())]


async def make_due(conn: Connection) -> None:
    """Time passes: every message waiting for a retry, or claimed, is due (its lease ran out)."""
    await conn.execute(
        "UPDATE channels.notifications SET next_attempt_at = clock_timestamp() - interval '1 second',"
        " lease_until = CASE WHEN lease_until IS NOT NULL THEN clock_timestamp() - interval '1 second' END"
        " WHERE state IN ('pending', 'failed', 'sending')"
    )


@pytest.fixture
def notify_configured(settings: Settings) -> Iterator[Settings]:
    """The subscriber configured for this process with the test settings (in the city's zone)."""
    configured = settings.model_copy(update={"timezone": "Asia/Shanghai"})
    notify.configure(configured)
    yield configured
    notify.configure(settings)


# --- a real SMTP server ------------------------------------------------------------------------


class MailReceiver:
    """aiosmtpd's handler: keeps every message; `fail_next` answers that many DATA commands with
    a temporary failure (451) first, as a busy server does."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.fail_next = 0
        self.refuse_recipients = False

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: SmtpEnvelope, address: str, options: list[str]
    ) -> str:
        if self.refuse_recipients:
            return f"550 5.1.1 <{address}>: no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: SmtpEnvelope
    ) -> str:
        if self.fail_next > 0:
            self.fail_next -= 1
            return "451 4.3.0 try again later"
        raw = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        self.envelopes.append((str(envelope.mail_from), list(envelope.rcpt_tos)))
        return "250 OK"


@pytest.fixture
def notify_smtp() -> Iterator[tuple[MailReceiver, int]]:
    receiver = MailReceiver()
    port = free_port()
    controller = Controller(receiver, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield receiver, port
    finally:
        controller.stop()


# --- a real HTTP SMS gateway -------------------------------------------------------------------


class GatewayReceiver:
    """What the local gateway received, and the statuses it answers with (200 when none left)."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.statuses: list[int] = []
        self.lock = threading.Lock()


def _gateway_handler(receiver: GatewayReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length))
            with receiver.lock:
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
            reply = json.dumps({"accepted": status < 300}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


@pytest.fixture
def notify_gateway() -> Iterator[tuple[GatewayReceiver, str]]:
    receiver = GatewayReceiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _gateway_handler(receiver))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver, f"http://127.0.0.1:{server.server_address[1]}/send"
    finally:
        server.shutdown()
        server.server_close()


def payload(event: msgspec.Struct) -> dict[str, Any]:
    """An event's payload as the outbox stores it."""
    decoded: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(event))
    return decoded
