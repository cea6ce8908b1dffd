"""Sending, when things go wrong: leases taken over, jobs cancelled, sends that hang, a message
that cannot even be prepared, addresses that are not verified, and the records' retention.
Against the real PostgreSQL; the senders are typed fakes behind `Sender` where the test needs
to control time or failure."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest

from channels import notify_store as store
from channels.notify_delivery import RETENTION_DAYS, deliver_due, prune_notifications
from channels.notify_senders import DeliveryFailed, LogSender, Outgoing, Senders
from channels.notify_store import ClaimedRow
from onewindow import worker
from onewindow.db import Connection
from onewindow.settings import Settings
from tests.channels.notify_fixtures import make_due, make_person, rows_of
from tests.conftest import RollbackDatabase

ADDRESS = "citizen@example.org"
PHONE = "+8613800138000"
JOB_TIMEOUT = timedelta(seconds=300)  # onewindow.worker's arq job_timeout


async def _queue(conn: Connection, recipient: str, *, channel: str = "email") -> uuid.UUID:
    found = await store.add_notification(
        conn,
        event_id=uuid.uuid4(),
        topic="grid.case.reported",
        recipient=recipient,
        template="report_received",
        channel=channel,
        language="en",
        params={"number": "GC-1"},
    )
    assert found is not None
    return found


async def _row(conn: Connection, notification_id: uuid.UUID) -> dict[str, Any]:
    [row] = await rows_of(conn, id=notification_id)
    return row


async def _clock(conn: Connection) -> Any:
    return await conn.fetchval("SELECT clock_timestamp()")


class Recording:
    """Sends nothing; keeps what it was given and the database's time when it was asked to send."""

    via = "recording"

    def __init__(
        self, db: RollbackDatabase, *, fail: DeliveryFailed | None = None, pause: float = 0.0
    ) -> None:
        self.db = db
        self.fail = fail
        self.pause = pause
        self.sent: list[Outgoing] = []
        self.asked_at: list[Any] = []

    async def send(self, message: Outgoing) -> None:
        await asyncio.sleep(self.pause)
        async with self.db.connection() as conn:  # the test's one connection: wait for its turn
            self.asked_at.append(await _clock(conn))
        if self.fail is not None:
            raise self.fail
        self.sent.append(message)


def _both(sender: Any) -> Senders:
    return Senders(email=sender, sms=sender)


# --- leases ------------------------------------------------------------------------------------


async def test_a_sender_whose_lease_ran_out_cannot_overwrite_the_new_holders_outcome(
    conn: Connection, settings: Settings
) -> None:
    subject = await make_person(conn, settings, email=ADDRESS)
    notification = await _queue(conn, subject)
    [first] = await store.claim_due(conn, lease_seconds=60, limit=10)
    assert await store.claim_due(conn, lease_seconds=60, limit=10) == []  # leased: nobody else takes it

    await make_due(conn)  # the first sender hangs past its lease
    [second] = await store.claim_due(conn, lease_seconds=60, limit=10)
    assert (second.id, second.attempts) == (notification, 2)
    assert second.lease != first.lease
    assert await store.mark_sent(conn, second, via="smtp")

    # The first sender comes back: whatever it says changes nothing, the message stays sent.
    assert not await store.mark_failed(conn, first, error="smtp 451", retry_in=30)
    assert not await store.mark_final(conn, first, state="dead", error="smtp 550")
    assert not await store.mark_sent(conn, first, via="smtp")
    row = await _row(conn, notification)
    assert (row["state"], row["sent_via"], row["last_error"], row["lease"]) == ("sent", "smtp", None, None)
    await make_due(conn)
    assert await store.claim_due(conn, lease_seconds=60, limit=10) == []  # not sent again


async def test_a_send_overtaken_while_it_hung_leaves_the_message_to_its_new_holder(
    conn: Connection, db: RollbackDatabase, settings: Settings
) -> None:
    subject = await make_person(conn, settings, email=ADDRESS)
    notification = await _queue(conn, subject)
    taken: list[ClaimedRow] = []

    class Overtaken:
        via = "slow"

        async def send(self, message: Outgoing) -> None:
            # While this send hangs, its lease runs out and another worker claims the message.
            async with db.transaction() as other:
                await make_due(other)
                taken.extend(await store.claim_due(other, lease_seconds=60, limit=10))
            raise DeliveryFailed("smtp 451")

    assert await deliver_due(db, settings, _both(Overtaken())) == 1
    [holder] = taken
    row = await _row(conn, notification)
    # Not flipped to failed by the sender that lost it: still the new holder's, to record.
    assert (row["state"], row["lease"], row["attempts"], row["last_error"]) == (
        "sending",
        holder.lease,
        2,
        None,
    )


async def test_lease_times_come_from_the_database_and_fit_well_inside_the_job_timeout(
    conn: Connection, db: RollbackDatabase, settings: Settings
) -> None:
    subject = await make_person(conn, settings, email=ADDRESS)
    notification = await _queue(conn, subject)
    before = await _clock(conn)  # later than this transaction's now(): the claim must use the clock
    [claimed] = await store.claim_due(conn, lease_seconds=75, limit=10)
    row = await _row(conn, notification)
    assert row["lease"] == claimed.lease
    assert before < row["updated_at"]
    assert timedelta(seconds=74) < row["lease_until"] - before < timedelta(seconds=76)


# --- cancelled jobs and hanging sends --------------------------------------------------------


async def test_a_cancelled_batch_gives_back_what_it_had_not_finished(
    conn: Connection, db: RollbackDatabase, settings: Settings
) -> None:
    people = [await make_person(conn, settings, email=f"c{n}@example.org") for n in range(3)]
    queued = [await _queue(conn, person) for person in people]
    hanging = asyncio.Event()
    asked: list[uuid.UUID] = []

    class Hanging:
        via = "hanging"

        async def send(self, message: Outgoing) -> None:
            asked.append(message.notification_id)
            if len(asked) == len(queued):
                hanging.set()
            await asyncio.Event().wait()  # never answers

    job = asyncio.create_task(deliver_due(db, settings, _both(Hanging())))
    await asyncio.wait_for(hanging.wait(), 10)
    for notification in queued:
        row = await _row(conn, notification)
        assert row["state"] == "sending"
        assert row["lease_until"] - row["updated_at"] < JOB_TIMEOUT / 2  # a batch's lease, not a run's

    job.cancel()  # arq's job timeout, or the worker shutting down
    with pytest.raises(asyncio.CancelledError):
        await job
    now = await _clock(conn)
    for notification in queued:
        row = await _row(conn, notification)
        # Cut off mid-send: perhaps sent, so an attempt; due again at once, not in five minutes.
        assert (row["state"], row["attempts"], row["last_error"]) == ("failed", 1, "interrupted")
        assert (row["lease"], row["lease_until"]) == (None, None)
        assert row["next_attempt_at"] <= now

    assert await deliver_due(db, settings, _both(LogSender("email"))) == 3
    assert {(await _row(conn, n))["state"] for n in queued} == {"sent"}


async def test_released_untried_messages_do_not_count_the_attempt(
    conn: Connection, settings: Settings
) -> None:
    subject = await make_person(conn, settings, email=ADDRESS)
    notification = await _queue(conn, subject)
    [claimed] = await store.claim_due(conn, lease_seconds=60, limit=10)
    assert await store.release(conn, [(claimed.id, uuid.uuid4())], attempted=False) == 0  # not its lease
    assert await store.release(conn, [(claimed.id, claimed.lease)], attempted=False) == 1
    row = await _row(conn, notification)
    assert (row["state"], row["attempts"], row["lease"], row["last_error"]) == ("pending", 0, None, None)
    [again] = await store.claim_due(conn, lease_seconds=60, limit=10)
    assert again.attempts == 1


async def test_a_send_that_hangs_is_cut_off_and_retried(
    conn: Connection, db: RollbackDatabase, settings: Settings
) -> None:
    subject = await make_person(conn, settings, email=ADDRESS)
    notification = await _queue(conn, subject)
    sender = Recording(db, pause=30.0)
    assert await asyncio.wait_for(deliver_due(db, settings, _both(sender), send_timeout=0.2), 10) == 1
    row = await _row(conn, notification)
    assert (row["state"], row["attempts"], row["last_error"]) == (
        "failed",
        1,
        "recording timeout after 0.2 s",
    )
    assert row["lease"] is None


# --- one bad message is its own failure ------------------------------------------------------


async def test_a_message_that_cannot_be_prepared_fails_alone_and_ends_dead(
    conn: Connection, db: RollbackDatabase, settings: Settings
) -> None:
    configured = settings.model_copy(update={"notify_max_attempts": 2})
    broken = await make_person(conn, configured, phone=PHONE)
    fine = await make_person(conn, configured, email=ADDRESS)
    # A phone number that no longer decrypts (a rotated key, a damaged row): reading it raises.
    await conn.execute(
        "UPDATE identity.persons SET phone_enc = $2 WHERE id = $1", uuid.UUID(broken), b"\x01" + b"\x00" * 40
    )
    bad = await _queue(conn, broken, channel="sms")
    good = await _queue(conn, fine)
    sender = Recording(db)

    assert await deliver_due(db, configured, _both(sender)) == 2
    assert [m.notification_id for m in sender.sent] == [good]  # the other message still went
    failed = await _row(conn, bad)
    assert (failed["state"], failed["attempts"], failed["last_error"]) == ("failed", 1, "DecryptionError")
    assert failed["lease"] is None

    await make_due(conn)
    assert await deliver_due(db, configured, _both(sender)) == 1
    dead = await _row(conn, bad)
    assert (dead["state"], dead["attempts"], dead["last_error"], dead["params"]) == (
        "dead",
        2,
        "DecryptionError",
        None,
    )
    await make_due(conn)
    assert await deliver_due(db, configured, _both(sender)) == 0  # it does not come back


# --- times of the outcome --------------------------------------------------------------------


async def test_sent_at_and_the_retry_time_are_when_the_outcome_happened(
    conn: Connection, db: RollbackDatabase, settings: Settings
) -> None:
    configured = settings.model_copy(update={"notify_retry_base_seconds": 60.0})
    subject = await make_person(conn, configured, email=ADDRESS)
    notification = await _queue(conn, subject)

    failing = Recording(db, fail=DeliveryFailed("smtp 451"), pause=0.2)
    assert await deliver_due(db, configured, _both(failing)) == 1
    row = await _row(conn, notification)
    [asked] = failing.asked_at
    assert row["updated_at"] > asked
    assert row["next_attempt_at"] >= asked + timedelta(seconds=60)

    await make_due(conn)
    sending = Recording(db, pause=0.2)
    assert await deliver_due(db, configured, _both(sending)) == 1
    row = await _row(conn, notification)
    [asked] = sending.asked_at
    assert row["state"] == "sent"
    assert row["sent_at"] >= asked  # not the claim's time, before the send


# --- verified addresses only -----------------------------------------------------------------


async def test_an_address_unverified_after_the_message_was_queued_gets_nothing(
    conn: Connection, db: RollbackDatabase, settings: Settings
) -> None:
    by_mail = await make_person(conn, settings, email=ADDRESS)
    by_phone = await make_person(conn, settings, phone=PHONE)
    mail = await _queue(conn, by_mail)
    sms = await _queue(conn, by_phone, channel="sms")
    await conn.execute(
        "UPDATE identity.persons SET email_verified_at = NULL WHERE id = $1", uuid.UUID(by_mail)
    )
    await conn.execute(
        "UPDATE identity.persons SET phone_verified_at = NULL WHERE id = $1", uuid.UUID(by_phone)
    )
    sender = Recording(db)
    assert await deliver_due(db, settings, _both(sender)) == 2
    assert sender.sent == []
    for notification in (mail, sms):
        row = await _row(conn, notification)
        assert (row["state"], row["last_error"], row["params"]) == (
            "skipped",
            "no verified address any more",
            None,
        )


# --- retention -------------------------------------------------------------------------------


async def test_finished_messages_are_pruned_after_the_retention(
    conn: Connection, db: RollbackDatabase, settings: Settings
) -> None:
    subject = await make_person(conn, settings, email=ADDRESS)
    by_state = {
        state: await _queue(conn, subject) for state in ("sent", "skipped", "dead", "failed", "pending")
    }
    recent = await _queue(conn, subject)
    for state, notification in by_state.items():
        await conn.execute(
            "UPDATE channels.notifications SET state = $2,"
            " updated_at = clock_timestamp() - make_interval(days => $3 + 1) WHERE id = $1",
            notification,
            state,
            RETENTION_DAYS,
        )
    await conn.execute("UPDATE channels.notifications SET state = 'sent' WHERE id = $1", recent)

    assert await prune_notifications({"db": db, "settings": settings}) == 3
    left = {row["id"] for row in await rows_of(conn, recipient=subject)}
    # Old unfinished ones wait for their sender; a recent record stays.
    assert left == {by_state["failed"], by_state["pending"], recent}
    assert prune_notifications in worker.functions()
    assert any(job.coroutine is prune_notifications for job in worker.cron_jobs())
