"""Sending the queued notifications, after the subscriber's transaction has committed.

The worker runs `send_notifications` every few seconds (an arq cron job). It claims due messages
in one short transaction (`FOR UPDATE SKIP LOCKED`, with a lease: several workers share the
work, and a worker that dies mid-send leaves messages that are claimed again when the lease runs
out), then sends each one outside any transaction (an SMTP server's thirty seconds never hold a
database connection in a transaction) and records the outcome in a transaction of its own.

Retries: `ONEWINDOW_NOTIFY_RETRY_BASE_SECONDS` doubled per failed attempt, capped at six hours;
after `ONEWINDOW_NOTIFY_MAX_ATTEMPTS` attempts, or a failure that retrying cannot fix (an address
the server refuses), the message is `dead`. Delivery is at least once: a worker dying between the
send and its record sends the message again (the e-mail's Message-ID and the gateway's
Idempotency-Key are the notification's id, so the far end can tell).

Logs name the notification id, template, attempt and a reason without personal data.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Final

from channels import notify_store as store
from channels.notify_senders import DeliveryFailed, Outgoing, Senders
from channels.notify_store import NotificationRow
from channels.notify_templates import render
from identity import api as identity_api
from onewindow.db import Database
from onewindow.jobs import JobContext, record_failure
from onewindow.settings import Settings

__all__ = ["deliver_due", "retry_delay", "send_notifications"]

log = logging.getLogger(__name__)

_BATCH: Final = 50
_BATCHES_PER_RUN: Final = 20
_LEASE: Final = timedelta(minutes=5)
_RETRY_CAP: Final = timedelta(hours=6)


def retry_delay(settings: Settings, attempts: int) -> timedelta:
    """The wait after the `attempts`-th failed attempt: base, 2 x base, 4 x base, ... up to 6 hours."""
    seconds = settings.notify_retry_base_seconds * 2 ** max(attempts - 1, 0)
    return min(timedelta(seconds=seconds), _RETRY_CAP)


async def deliver_due(
    db: Database, settings: Settings, senders: Senders, *, now: datetime | None = None, limit: int = _BATCH
) -> int:
    """Claim and send one batch of due messages; returns how many were claimed."""
    at = now or datetime.now(UTC)
    async with db.transaction() as conn:
        claimed = await store.claim_due(conn, now=at, lease=_LEASE, limit=limit)
    for row in claimed:
        await _deliver(db, settings, senders, row, at)
    return len(claimed)


async def _deliver(
    db: Database, settings: Settings, senders: Senders, row: NotificationRow, at: datetime
) -> None:
    fields = {"notification": str(row.id), "template": row.template, "attempt": row.attempts}
    async with db.transaction() as conn:
        contact = await identity_api.contact_details(conn, settings, row.recipient)
    address = None if contact is None else contact.email if row.channel == "email" else contact.phone
    if contact is None or address is None:
        # The person went away, or removed the address, between the event and now.
        async with db.transaction() as conn:
            await store.mark_final(conn, row.id, state="skipped", error="no address any more", at=at)
        log.info("notification skipped: no address", extra=fields)
        return
    try:
        rendered = render(row.template, row.language, row.channel, row.params or {}, name=contact.name)  # type: ignore[arg-type]
    except KeyError as error:  # a template without its parameter: retrying cannot help
        await _failed(db, settings, row, at, DeliveryFailed(f"template parameter {error}", permanent=True))
        return
    sender = senders.of(rendered.channel)
    outgoing = Outgoing(
        notification_id=row.id,
        template=row.template,
        language=row.language,
        to=address,
        subject=rendered.subject,
        text=rendered.text,
    )
    try:
        await sender.send(outgoing)
    except DeliveryFailed as failure:
        await _failed(db, settings, row, at, failure)
        return
    except Exception as error:  # a sender's bug: its message may quote the address, so not logged
        await _failed(db, settings, row, at, DeliveryFailed(f"{sender.via} {type(error).__name__}"))
        return
    async with db.transaction() as conn:
        await store.mark_sent(conn, row.id, via=sender.via, at=at)
    log.info("notification sent", extra={**fields, "via": sender.via})


async def _failed(
    db: Database, settings: Settings, row: NotificationRow, at: datetime, failure: DeliveryFailed
) -> None:
    fields = {"notification": str(row.id), "template": row.template, "attempt": row.attempts}
    async with db.transaction() as conn:
        if failure.permanent or row.attempts >= settings.notify_max_attempts:
            await store.mark_final(conn, row.id, state="dead", error=failure.reason, at=at)
            log.warning("notification dead", extra={**fields, "reason": failure.reason})
            return
        retry_at = at + retry_delay(settings, row.attempts)
        await store.mark_failed(conn, row.id, error=failure.reason, retry_at=retry_at, at=at)
    log.warning("notification failed; will retry", extra={**fields, "reason": failure.reason})


async def send_notifications(ctx: JobContext) -> int:
    """The arq job: send what is due, a bounded number of batches per run."""
    settings: Settings = ctx["settings"]
    senders = Senders.from_settings(settings)
    total = 0
    try:
        for _ in range(_BATCHES_PER_RUN):
            claimed = await deliver_due(ctx["db"], settings, senders)
            total += claimed
            if claimed < _BATCH:
                break
    except Exception:
        log.exception("job failed", extra={"job": "send_notifications"})
        await record_failure(ctx, "send_notifications")
        raise
    return total
