"""The senders against real local peers: e-mail through an aiosmtpd server, SMS through an HTTP
gateway on a loopback port, and the development senders' log lines (no personal data)."""

from __future__ import annotations

import logging
import uuid

import pytest
from pydantic import SecretStr

from channels.notify_senders import DeliveryFailed, HttpSmsGateway, LogSender, Outgoing, Senders, SmtpSender
from onewindow.settings import Settings
from tests.channels.notify_fixtures import (
    GatewayReceiver,
    MailReceiver,
    notify_gateway,
    notify_smtp,
)

__all__ = ["notify_gateway", "notify_smtp"]

PHONE = "+8613800138000"
ADDRESS = "xiaoming@example.org"


def _outgoing(
    to: str, *, subject: str = "已收到您的报告 GC-1", text: str = "王小明，您好：\n\n编号 GC-1。"
) -> Outgoing:
    return Outgoing(
        notification_id=uuid.uuid4(),
        template="report_received",
        language="zh-CN",
        to=to,
        subject=subject,
        text=text,
    )


def _smtp(settings: Settings, port: int) -> SmtpSender:
    return SmtpSender(
        settings.model_copy(
            update={
                "smtp_host": "127.0.0.1",
                "smtp_port": port,
                "smtp_security": "none",
                "mail_from": "OneWindow <noreply@city.example>",
            }
        )
    )


async def test_an_email_arrives_with_its_headers_language_and_text(
    settings: Settings, notify_smtp: tuple[MailReceiver, int]
) -> None:
    receiver, port = notify_smtp
    message = _outgoing(ADDRESS)
    await _smtp(settings, port).send(message)

    [mail] = receiver.messages
    assert receiver.envelopes == [("noreply@city.example", [ADDRESS])]
    assert mail["From"] == "OneWindow <noreply@city.example>"
    assert mail["To"] == ADDRESS
    assert mail["Subject"] == "已收到您的报告 GC-1"
    assert mail["Content-Language"] == "zh-CN"
    assert mail["Message-ID"] == f"<{message.notification_id}@city.example>"
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail.get_content_type() == "text/plain"
    assert mail.get_content_charset() == "utf-8"
    assert mail.get_content().replace("\r\n", "\n").strip() == "王小明，您好：\n\n编号 GC-1。"


async def test_smtp_failures_say_whether_a_retry_can_help(
    settings: Settings, notify_smtp: tuple[MailReceiver, int]
) -> None:
    receiver, port = notify_smtp
    sender = _smtp(settings, port)
    receiver.fail_next = 1
    with pytest.raises(DeliveryFailed) as busy:
        await sender.send(_outgoing(ADDRESS))
    assert not busy.value.permanent
    assert busy.value.reason == "smtp 451"

    receiver.refuse_recipients = True
    with pytest.raises(DeliveryFailed) as refused:
        await sender.send(_outgoing(ADDRESS))
    assert refused.value.permanent
    assert ADDRESS not in refused.value.reason  # the server's reply quotes it; the reason does not

    unreachable = SmtpSender(
        settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": 1, "smtp_security": "none"})
    )
    with pytest.raises(DeliveryFailed) as down:
        await unreachable.send(_outgoing(ADDRESS))
    assert not down.value.permanent
    assert receiver.messages == []


async def test_an_sms_goes_to_the_gateway_with_its_token_and_id(
    settings: Settings, notify_gateway: tuple[GatewayReceiver, str]
) -> None:
    receiver, url = notify_gateway
    gateway = HttpSmsGateway(
        settings.model_copy(update={"sms_gateway_url": url, "sms_gateway_token": SecretStr("gateway-token")})
    )
    message = _outgoing(PHONE, subject="", text="【一窗通】已收到您的报告，编号GC-1。")
    await gateway.send(message)

    [(headers, body)] = receiver.requests
    assert headers["authorization"] == "Bearer gateway-token"
    assert headers["idempotency-key"] == str(message.notification_id)
    assert body == {
        "id": str(message.notification_id),
        "to": PHONE,
        "text": "【一窗通】已收到您的报告，编号GC-1。",
        "language": "zh-CN",
    }


@pytest.mark.parametrize(("status", "permanent"), [(503, False), (429, False), (400, True), (401, True)])
async def test_gateway_errors_say_whether_a_retry_can_help(
    settings: Settings, notify_gateway: tuple[GatewayReceiver, str], status: int, permanent: bool
) -> None:
    receiver, url = notify_gateway
    receiver.statuses = [status]
    gateway = HttpSmsGateway(settings.model_copy(update={"sms_gateway_url": url}))
    with pytest.raises(DeliveryFailed) as failed:
        await gateway.send(_outgoing(PHONE))
    assert failed.value.permanent is permanent
    assert failed.value.reason == f"sms gateway {status}"
    assert "authorization" not in receiver.requests[0][0]  # no token configured, none sent


async def test_the_development_senders_log_no_personal_data(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    senders = Senders.from_settings(settings)  # no SMTP host, no gateway URL: the log senders
    assert isinstance(senders.email, LogSender)
    assert isinstance(senders.sms, LogSender)
    assert (senders.email.via, senders.sms.via) == ("log-email", "log-sms")
    sms = _outgoing(PHONE, subject="", text="【一窗通】王小明，编号GC-1。")
    mail = _outgoing(ADDRESS)
    with caplog.at_level(logging.DEBUG):
        await senders.sms.send(sms)
        await senders.email.send(mail)
    assert len(caplog.records) == 2
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    for personal in (PHONE, "13800138000", "王小明", ADDRESS, "xiaoming", "GC-1", "已收到"):
        assert personal not in logged
    assert str(sms.notification_id) in logged
    assert str(mail.notification_id) in logged
    assert "report_received" in logged
