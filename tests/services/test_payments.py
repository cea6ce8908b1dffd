"""Payments behind the PaymentProvider protocol: a provider that confirms later (its callback
calls `confirm`), a failed payment that leaves the item waiting, and one confirmed payment per item."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from uuid import UUID

import pytest

from onewindow.db import Connection
from onewindow.errors import Conflict, NotFound
from services import application_store, applications, payments
from tests.services.conftest import SUBSTANTIAL, People
from tests.services.test_applications import act
from tests.workflows.conftest import Clock


@dataclass
class LaterProvider:
    """A typed fake of a payment platform that answers `pending` and confirms by callback."""

    name: str = "later"
    asked: list[payments.PaymentRequest] = field(default_factory=list)
    answer: Literal["pending", "confirmed", "failed"] = "pending"

    async def collect(self, request: payments.PaymentRequest) -> payments.ProviderReply:
        self.asked.append(request)
        return payments.ProviderReply(reference=f"L-{len(self.asked)}", status=self.answer)


async def approved_signage(conn: Connection, people: People, clock: Clock) -> tuple[UUID, UUID]:
    app = await applications.create_draft(
        conn,
        applicant=people.citizen.subject,
        created_by=people.citizen.subject,
        channel="online",
        item_code="t-signage",
        form={"address": "滨河路 18 号", "sign_text": "河畔小馆"},
        now=clock(),
    )
    await applications.submit(conn, app.id, actor=people.citizen, acr=SUBSTANTIAL, now=clock())
    await act(conn, people.officers["urban"], str(app.id), "approve")
    (item,) = await application_store.items_of(conn, app.id)
    assert item.status == "awaiting_payment"
    return app.id, item.id


async def test_a_pending_payment_completes_on_the_providers_confirmation(
    conn: Connection, people: People, clock: Clock
) -> None:
    app_id, item_id = await approved_signage(conn, people, clock)
    provider = LaterProvider()
    payment = await payments.pay(
        conn, app_id, item_id, payer=people.citizen.subject, provider=provider, now=clock()
    )
    assert payment.status == "pending"
    assert provider.asked[0].amount_minor == 5000
    assert provider.asked[0].currency == "CNY"
    (item,) = await application_store.items_of(conn, app_id)
    assert item.status == "awaiting_payment"
    clock.advance(minutes=5)
    confirmed = await payments.confirm(conn, payment.id, status="confirmed", now=clock())
    assert (confirmed.status, confirmed.confirmed_at) == ("confirmed", clock())
    (item,) = await application_store.items_of(conn, app_id)
    assert item.status == "approved"
    app = await application_store.application(conn, app_id)
    assert app is not None
    assert (app.status, app.outcome) == ("decided", "approved")


async def test_a_failed_payment_leaves_the_item_waiting(
    conn: Connection, people: People, clock: Clock
) -> None:
    app_id, item_id = await approved_signage(conn, people, clock)
    failed = await payments.pay(
        conn,
        app_id,
        item_id,
        payer=people.citizen.subject,
        provider=LaterProvider(answer="failed"),
        now=clock(),
    )
    assert failed.status == "failed"
    (item,) = await application_store.items_of(conn, app_id)
    assert item.status == "awaiting_payment"
    paid = await payments.pay(
        conn,
        app_id,
        item_id,
        payer=people.citizen.subject,
        provider=payments.DevelopmentProvider(),
        now=clock(),
    )
    assert paid.status == "confirmed"
    assert sorted(p.status for p in await application_store.payments_of(conn, item_id)) == [
        "confirmed",
        "failed",
    ]
    with pytest.raises(Conflict):
        await payments.pay(
            conn,
            app_id,
            item_id,
            payer=people.citizen.subject,
            provider=payments.DevelopmentProvider(),
            now=clock(),
        )


async def test_only_the_applicant_pays_an_item_of_their_application(
    conn: Connection, people: People, clock: Clock
) -> None:
    app_id, item_id = await approved_signage(conn, people, clock)
    with pytest.raises(NotFound):
        await payments.pay(
            conn,
            app_id,
            item_id,
            payer=people.other.subject,
            provider=payments.DevelopmentProvider(),
            now=clock(),
        )
    other_app, _ = await approved_signage(conn, people, clock)
    with pytest.raises(NotFound):
        await payments.pay(
            conn,
            other_app,
            item_id,
            payer=people.citizen.subject,
            provider=payments.DevelopmentProvider(),
            now=clock(),
        )
