"""How a rendered notification leaves OneWindow: one `Sender` Protocol, an SMTP sender, an HTTP
SMS gateway client, and a development sender for each channel that only logs.

A sender raises `DeliveryFailed` saying whether trying again can help (a full mailbox, a gateway
that is down: yes; an address the server refuses: no). Its `reason` goes into the database and
the log, so it carries a status code or an exception's class, never a server's text: SMTP
servers echo the recipient's address in their replies.

Identity has its own `Sender` for one-time codes (identity/senders.py): it lives below channels
and sends within a request, so it cannot use this one, and its codes do not go through these
senders yet.
"""

from __future__ import annotations

import email.utils
import logging
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Final, Literal, Protocol
from uuid import UUID

import aiosmtplib
import httpx
import msgspec

from onewindow.settings import Settings

__all__ = [
    "DeliveryFailed",
    "HttpSmsGateway",
    "LogSender",
    "Outgoing",
    "Sender",
    "Senders",
    "SmtpSender",
]

log = logging.getLogger(__name__)

Channel = Literal["email", "sms"]
_SMTP_TIMEOUT: Final = 30.0
_GATEWAY_TIMEOUT: Final = 10.0


class Outgoing(msgspec.Struct, frozen=True, kw_only=True):
    """One message to send. `to` and the texts are personal data: never log them."""

    notification_id: UUID
    template: str
    language: str
    to: str
    subject: str
    text: str


class DeliveryFailed(Exception):
    """The message did not go out. `permanent`: trying again will not help."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


class Sender(Protocol):
    """Sends one message or raises `DeliveryFailed`. `via` names it in the delivery record."""

    via: str

    async def send(self, message: Outgoing) -> None: ...


class SmtpSender:
    """E-mail over SMTP (aiosmtplib): STARTTLS, implicit TLS or plain, with optional login."""

    via = "smtp"

    def __init__(self, settings: Settings) -> None:
        if settings.smtp_host is None:
            raise ValueError("SmtpSender needs ONEWINDOW_SMTP_HOST")
        self._host = settings.smtp_host
        self._port = settings.smtp_port
        self._security = settings.smtp_security
        self._user = settings.smtp_user
        self._password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        self._from = settings.mail_from
        _, address = email.utils.parseaddr(settings.mail_from)
        self._domain = address.rpartition("@")[2] or "onewindow.invalid"

    def message(self, outgoing: Outgoing) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self._from
        mail["To"] = outgoing.to
        mail["Subject"] = outgoing.subject
        mail["Date"] = email.utils.formatdate(localtime=False, usegmt=True)
        # The notification's id: a retried message is recognisably the same one.
        mail["Message-ID"] = f"<{outgoing.notification_id}@{self._domain}>"
        mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies, please
        mail.set_content(outgoing.text, charset="utf-8")
        mail["Content-Language"] = outgoing.language  # after set_content, which resets Content-*
        return mail

    async def send(self, message: Outgoing) -> None:
        try:
            await aiosmtplib.send(
                self.message(message),
                hostname=self._host,
                port=self._port,
                use_tls=self._security == "tls",
                start_tls=True if self._security == "starttls" else False,  # noqa: SIM210 - None would mean "if offered"
                username=self._user,
                password=self._password,
                timeout=_SMTP_TIMEOUT,
            )
        except aiosmtplib.SMTPRecipientsRefused as error:
            codes = sorted({refused.code for refused in error.recipients})
            raise DeliveryFailed(
                f"smtp recipient refused {codes}", permanent=all(c >= 500 for c in codes)
            ) from None
        except aiosmtplib.SMTPResponseException as error:
            raise DeliveryFailed(f"smtp {error.code}", permanent=error.code >= 500) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            raise DeliveryFailed(f"smtp {type(error).__name__}") from None


class HttpSmsGateway:
    """SMS through the city's HTTP gateway.

    The contract (docs/notifications.md): `POST <url>` with `Authorization: Bearer <token>`,
    `Idempotency-Key: <notification id>` and the JSON body `{"id", "to", "text", "language"}`;
    any 2xx is accepted. 408, 429 and 5xx are tried again later; any other 4xx is permanent.
    """

    via = "sms-gateway"

    def __init__(self, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        if settings.sms_gateway_url is None:
            raise ValueError("HttpSmsGateway needs ONEWINDOW_SMS_GATEWAY_URL")
        self._url = settings.sms_gateway_url
        self._token = settings.sms_gateway_token.get_secret_value() if settings.sms_gateway_token else None
        self._transport = transport

    async def send(self, message: Outgoing) -> None:
        headers = {"Idempotency-Key": str(message.notification_id)}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        body = {
            "id": str(message.notification_id),
            "to": message.to,
            "text": message.text,
            "language": message.language,
        }
        try:
            async with httpx.AsyncClient(timeout=_GATEWAY_TIMEOUT, transport=self._transport) as client:
                reply = await client.post(self._url, json=body, headers=headers)
        except httpx.HTTPError as error:
            raise DeliveryFailed(f"sms gateway {type(error).__name__}") from None
        if reply.is_success:
            return
        status = reply.status_code
        retry = status in (408, 429) or status >= 500
        raise DeliveryFailed(f"sms gateway {status}", permanent=not retry)


class LogSender:
    """The development sender of a channel without a server: one log line per message, with the
    notification's id and template only (no address, no number, no text). `via` says so in the
    delivery record, so a log-only 'sent' is never mistaken for a delivered one."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.via = f"log-{channel}"

    async def send(self, message: Outgoing) -> None:
        log.info(
            "notification sent to the log only (no %s server configured)",
            "SMTP" if self.channel == "email" else "SMS gateway",
            extra={
                "notification": str(message.notification_id),
                "template": message.template,
                "channel": self.channel,
            },
        )


@dataclass(frozen=True, slots=True)
class Senders:
    """The sender of each channel."""

    email: Sender
    sms: Sender

    @classmethod
    def from_settings(cls, settings: Settings) -> Senders:
        return cls(
            email=SmtpSender(settings) if settings.smtp_host else LogSender("email"),
            sms=HttpSmsGateway(settings) if settings.sms_gateway_url else LogSender("sms"),
        )

    def of(self, channel: Channel) -> Sender:
        return self.email if channel == "email" else self.sms
