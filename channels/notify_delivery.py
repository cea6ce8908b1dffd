"""Sending the queued notifications, after the subscriber's transaction has committed.

The worker runs `send_notifications` every few seconds (an arq cron job). It claims a small batch
of due messages in one short transaction (`FOR UPDATE SKIP LOCKED`, each row with a lease: a
token and an end time, both set by the database), then sends them concurrently outside any
transaction (an SMTP server's thirty seconds never hold a database connection in a transaction),
each send bounded by `_SEND_TIMEOUT`, and records each outcome in a transaction of its own, only
while it still holds that row's lease. So:

- a worker that dies mid-send leaves rows whose lease runs out (one send's timeout and a margin
  for its bookkeeping: the batch is sent at once); another worker claims them again;
- a worker whose lease ran out meanwhile cannot overwrite what the worker that took the message
  over recorded (its write carries the old token and changes nothing);
- a job that is cancelled (arq's job timeout, a worker shutting down) gives back what it had not
  finished at once: not-yet-tried rows without counting the attempt, rows cut off mid-send as an
  attempt (they may have gone out);
- one message's unexpected error (a phone number that does not decrypt, a template bug) is that
  message's failure, recorded by its type name and counted toward `dead`, not the batch's.

Retries: `ONEWINDOW_NOTIFY_RETRY_BASE_SECONDS` doubled per failed attempt (`onewindow.retry`),
capped at six hours; after `ONEWINDOW_NOTIFY_MAX_ATTEMPTS` attempts, or a failure that retrying
cannot fix (an address the server refuses), the message is `dead`. Delivery is at least once: a
worker dying between the send and its record sends the message again (the e-mail's Message-ID and
the gateway's Idempotency-Key are the notification's id, so the far end can tell).

Finished messages (sent, skipped, dead) are deleted `RETENTION_DAYS` after they finished
(`prune_notifications`, daily).

Logs name the notification id, template, attempt and a reason without personal data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Final, Literal
from uuid import UUID

from channels import notify
from channels import notify_store as store
from channels.notify_senders import DeliveryFailed, Outgoing, Senders
from channels.notify_store import ClaimedRow
from channels.notify_templates import render
from identity import api as identity_api
from onewindow.db import Connection, Database
from onewindow.jobs import JobContext, record_failure, transactional
from onewindow.retry import backoff
from onewindow.settings import Settings

__all__ = ["RETENTION_DAYS", "deliver_due", "prune_notifications", "retry_delay", "send_notifications"]

log = logging.getLogger(__name__)

# Sent at once, so small: what a cancelled job leaves behind is at most this many messages.
_BATCH: Final = 10
# One send, whatever the sender's own timeouts add up to (SMTP's are per step of the dialogue).
_SEND_TIMEOUT: Final = 45.0
# The batch's sends run together, so a lease is one send plus reading the contact and recording.
_LEASE_MARGIN: Final = 30.0
# No new batch after this long: a run ends well inside the worker's job timeout (300 s).
_RUN_SECONDS: Final = 120.0
# A cancelled job's last database call, giving back its unfinished rows; else their leases run out.
_RELEASE_TIMEOUT: Final = 5.0
_RETRY_CAP: Final = timedelta(hours=6)
# The delivery record answers "was I told?" for a quarter; then it goes (a setting-free constant,
# not the outbox's retention: a different question with a different audience).
RETENTION_DAYS: Final = 90

_Progress = Literal["claimed", "sending", "done"]


def retry_delay(settings: Settings, attempts: int) -> timedelta:
    """The wait after the `attempts`-th failed attempt: base, 2 x base, 4 x base, ... up to 6 hours."""
    seconds = backoff(attempts, base=settings.notify_retry_base_seconds, cap=_RETRY_CAP.total_seconds())
    return timedelta(seconds=seconds)


async def deliver_due(
    db: Database,
    settings: Settings,
    senders: Senders,
    *,
    limit: int = _BATCH,
    send_timeout: float = _SEND_TIMEOUT,
) -> int:
    """Claim and send one batch of due messages, each send cut off after `send_timeout` seconds;
    returns how many were claimed."""
    async with db.transaction() as conn:
        claimed = await store.claim_due(conn, lease_seconds=send_timeout + _LEASE_MARGIN, limit=limit)
    progress: dict[UUID, _Progress] = dict.fromkeys((row.id for row in claimed), "claimed")
    delivery = _Delivery(db, settings, senders, send_timeout)
    try:
        await asyncio.gather(*(delivery.one(row, progress) for row in claimed))
    except asyncio.CancelledError:
        await _release(db, claimed, progress)
        raise
    return len(claimed)


async def _release(db: Database, claimed: list[ClaimedRow], progress: dict[UUID, _Progress]) -> None:
    """Give back what a cancelled batch did not finish; if even that fails, the leases run out."""
    untried = [(row.id, row.lease) for row in claimed if progress[row.id] == "claimed"]
    cut_off = [(row.id, row.lease) for row in claimed if progress[row.id] == "sending"]

    async def release() -> None:
        async with db.transaction() as conn:
            await store.release(conn, untried, attempted=False)
            await store.release(conn, cut_off, attempted=True)

    # Its own task (wait_for's): this one is being cancelled. Any failure: the leases run out.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(release(), _RELEASE_TIMEOUT)
    log.warning(
        "notifications given back: sending was cancelled",
        extra={"untried": len(untried), "cut_off": len(cut_off)},
    )


def _fields(row: ClaimedRow) -> dict[str, object]:
    return {"notification": str(row.id), "template": row.template, "attempt": row.attempts}


@dataclass(frozen=True, slots=True)
class _Delivery:
    """Sending one claimed batch."""

    db: Database
    settings: Settings
    senders: Senders
    send_timeout: float

    async def one(self, row: ClaimedRow, progress: dict[UUID, _Progress]) -> None:
        """One message, whatever happens: an unexpected error is recorded as its failure."""
        try:
            await self._deliver(row, progress)
        except Exception as error:  # one message's bug must not stop the others
            # The type only: an exception's text may quote personal data (an address, a number).
            reason = type(error).__name__
            try:
                await self._failed(row, DeliveryFailed(reason))
            except Exception as again:  # the database is away: the lease runs out
                log.error(  # noqa: TRY400 - no traceback: it may quote personal data
                    "notification outcome not recorded",
                    extra={**_fields(row), "reason": reason, "error": type(again).__name__},
                )
        progress[row.id] = "done"

    async def _deliver(self, row: ClaimedRow, progress: dict[UUID, _Progress]) -> None:
        fields = _fields(row)
        async with self.db.transaction() as conn:
            contact = await identity_api.contact_details(conn, self.settings, row.recipient)
        channel: Literal["email", "sms"] = "sms" if row.channel == "sms" else "email"
        address = None if contact is None else notify.verified_address(contact, channel)
        if contact is None or address is None:
            # The person went away, or removed (or un-verified) the address, since the event.
            async with self.db.transaction() as conn:
                kept = await store.mark_final(
                    conn, row, state="skipped", error="no verified address any more"
                )
            _log_outcome(kept, "notification skipped: no verified address", fields)
            return
        try:
            rendered = render(row.template, row.language, channel, row.params or {}, name=contact.name)  # type: ignore[arg-type]
        except KeyError as error:  # a template without its parameter: retrying cannot help
            await self._failed(row, DeliveryFailed(f"template parameter {error}", permanent=True))
            return
        sender = self.senders.of(rendered.channel)
        outgoing = Outgoing(
            notification_id=row.id,
            template=row.template,
            language=row.language,
            to=address,
            subject=rendered.subject,
            text=rendered.text,
        )
        progress[row.id] = "sending"
        try:
            async with asyncio.timeout(self.send_timeout):
                await sender.send(outgoing)
        except DeliveryFailed as failure:
            await self._failed(row, failure)
            return
        except TimeoutError:
            await self._failed(row, DeliveryFailed(f"{sender.via} timeout after {self.send_timeout:g} s"))
            return
        except Exception as error:  # a sender's bug: its message may quote the address, so not logged
            await self._failed(row, DeliveryFailed(f"{sender.via} {type(error).__name__}"))
            return
        async with self.db.transaction() as conn:
            kept = await store.mark_sent(conn, row, via=sender.via)
        _log_outcome(kept, "notification sent", {**fields, "via": sender.via})

    async def _failed(self, row: ClaimedRow, failure: DeliveryFailed) -> None:
        fields = {**_fields(row), "reason": failure.reason}
        async with self.db.transaction() as conn:
            if failure.permanent or row.attempts >= self.settings.notify_max_attempts:
                kept = await store.mark_final(conn, row, state="dead", error=failure.reason)
                _log_outcome(kept, "notification dead", fields, level=logging.WARNING)
                return
            retry_in = retry_delay(self.settings, row.attempts).total_seconds()
            kept = await store.mark_failed(conn, row, error=failure.reason, retry_in=retry_in)
        _log_outcome(kept, "notification failed; will retry", fields, level=logging.WARNING)


def _log_outcome(kept: bool, message: str, fields: dict[str, object], *, level: int = logging.INFO) -> None:
    if kept:
        log.log(level, message, extra=fields)
    else:  # the lease ran out and another sender has the message now: its outcome stands
        log.warning(
            "notification lease lost before its outcome was recorded", extra={**fields, "outcome": message}
        )


async def send_notifications(ctx: JobContext) -> int:
    """The arq job: send what is due, batch after batch, for at most about `_RUN_SECONDS`."""
    settings: Settings = ctx["settings"]
    senders = Senders.from_settings(settings)
    total = 0
    started = time.monotonic()
    try:
        while True:
            claimed = await deliver_due(ctx["db"], settings, senders)
            total += claimed
            if claimed < _BATCH or time.monotonic() - started > _RUN_SECONDS:
                break
    except Exception:
        log.exception("job failed", extra={"job": "send_notifications"})
        await record_failure(ctx, "send_notifications")
        raise
    return total


@transactional
async def prune_notifications(conn: Connection, settings: Settings) -> int:
    """Daily: forget the records of messages finished more than `RETENTION_DAYS` ago."""
    deleted = await store.prune(conn, older_than_days=RETENTION_DAYS)
    log.info("notifications pruned", extra={"deleted": deleted})
    return deleted
