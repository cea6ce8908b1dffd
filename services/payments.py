"""Fees: an approved item with a fee waits in its workflow's `payment` state until it is paid.

The applicant pays through a `PaymentProvider` (a bank's or a payment platform's API behind this
Protocol). A confirmed payment acts on the item's payment wait as the system (`payments`), which
ends the review approved (and issues the certificate) in the same transaction. The development
provider confirms at once; a real provider would confirm later by its callback, which calls
`confirm` with the provider's reference.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Literal, Protocol
from uuid import UUID, uuid4

import msgspec

from onewindow.db import Connection
from onewindow.errors import Conflict, NotFound
from services import application_store as store
from services import applications, catalog
from services.application_store import PaymentRow
from workflows import api as workflows

__all__ = ["DevelopmentProvider", "PaymentProvider", "PaymentRequest", "ProviderReply", "confirm", "pay"]

SYSTEM = "payments"


class PaymentRequest(msgspec.Struct, frozen=True, kw_only=True):
    """What a provider is asked to collect (no personal data: the payer pays on the provider's page)."""

    payment_id: UUID
    amount_minor: int
    currency: str
    description: str


class ProviderReply(msgspec.Struct, frozen=True, kw_only=True):
    reference: str
    status: Literal["pending", "confirmed", "failed"]


class PaymentProvider(Protocol):
    name: str

    async def collect(self, request: PaymentRequest) -> ProviderReply: ...


class DevelopmentProvider:
    """For development and the demo: every payment is confirmed at once, nothing is charged."""

    name = "development"

    async def collect(self, request: PaymentRequest) -> ProviderReply:
        return ProviderReply(reference=f"DEV-{secrets.token_hex(8).upper()}", status="confirmed")


async def _payment_task(conn: Connection, item_id: UUID) -> workflows.TaskView:
    instance = await workflows.instance_for_subject(conn, applications.KIND, str(item_id))
    task = next(
        (
            t
            for t in (instance.open_tasks if instance else ())
            if t.kind == "wait" and t.state == applications.PAYMENT_STATE
        ),
        None,
    )
    if task is None:
        raise Conflict("This item is not waiting for a payment.")
    return task


async def pay(
    conn: Connection,
    app_id: UUID,
    item_id: UUID,
    *,
    payer: str,
    provider: PaymentProvider,
    now: datetime,
) -> PaymentRow:
    """The applicant pays the fee of one item awaiting payment. 404 for someone else's application
    or an item not of it; 409 when the item is not waiting for a payment (paid already, not
    approved yet). A confirmed payment completes the review at once.

    Locks: the item's payment lock first (`store.lock_payments`: two payments of one item take
    their turns, and the second finds it paid), then, by acting on the payment wait, the engine's
    order (the instance, then the application). The application is not locked here first: that
    was the opposite order of every department's step and of a withdrawal, a deadlock."""
    app = await store.application(conn, app_id)
    if app is None or app.applicant != payer:
        raise NotFound("No such application.")
    row = await store.item(conn, item_id)
    if row is None or row.application_id != app.id:
        raise NotFound("No such item of this application.")
    await store.lock_payments(conn, row.id)
    row = await store.item(conn, item_id)  # read again under the lock: paid or withdrawn meanwhile?
    if row is None:
        raise NotFound("No such item of this application.")
    if row.status != "awaiting_payment" or row.fee_minor <= 0:
        raise Conflict(f"This item is {row.status}: there is nothing to pay.")
    await _payment_task(conn, row.id)
    found = await catalog.item(conn, row.item_code, row.item_version)
    currency = found.currency if found is not None else "CNY"
    payment_id = uuid4()
    reply = await provider.collect(
        PaymentRequest(
            payment_id=payment_id,
            amount_minor=row.fee_minor,
            currency=currency,
            description=f"{app.number} {row.item_code}",
        )
    )
    payment = await store.insert_payment(
        conn,
        payment_id=payment_id,
        item_id=row.id,
        amount_minor=row.fee_minor,
        currency=currency,
        provider=provider.name,
        reference=reply.reference,
        now=now,
    )
    if reply.status == "pending":
        return payment
    return await confirm(conn, payment.id, status=reply.status, now=now)


async def confirm(
    conn: Connection, payment_id: UUID, *, status: Literal["confirmed", "failed"], now: datetime
) -> PaymentRow:
    """The provider's answer: a confirmation acts `paid` on the item's payment wait as the system."""
    payment = await store.settle_payment(conn, payment_id, status=status, now=now)
    if status == "confirmed":
        task = await _payment_task(conn, payment.application_item_id)
        await workflows.act(
            conn,
            task.id,
            action="paid",
            actor=workflows.Actor.system(SYSTEM),
            data={"payment": str(payment.id)},
        )
    return payment
