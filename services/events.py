"""What one-window approvals announces through the outbox, in the transaction of the change.

channels turns these into notifications to the applicant (docs/notifications.md). No personal
data other than the applicant's subject identifier: the notifier looks up how to reach them.
`service` is the item's name (or the bundle's, for a bundle) in both of the city's languages, so
the notifier can write in the recipient's.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal
from uuid import UUID

import msgspec

from onewindow.events import Event

__all__ = [
    "ApplicationDecided",
    "ApplicationReceived",
    "ApplicationReturned",
    "CertificateReady",
    "ServiceName",
]


class ServiceName(msgspec.Struct, frozen=True, kw_only=True):
    zh: str
    en: str


class ApplicationReceived(Event, frozen=True, kw_only=True):
    """An application was submitted (online, in the app, or accepted at the counter) and its items
    are with the departments."""

    topic: ClassVar[str] = "services.application.received"
    application_id: UUID
    number: str
    service: ServiceName
    applicant: str
    channel: Literal["online", "app", "counter"]
    promised_at: datetime
    at: datetime


class ApplicationReturned(Event, frozen=True, kw_only=True):
    """A department returned an item for correction: `what_to_fix` lists what the reviewer asked
    for, in the reviewer's words; `due` is when the item lapses if not corrected by then."""

    topic: ClassVar[str] = "services.application.returned"
    application_id: UUID
    number: str
    service: ServiceName
    applicant: str
    item: str
    what_to_fix: tuple[str, ...]
    due: datetime | None
    at: datetime


class ApplicationDecided(Event, frozen=True, kw_only=True):
    """Every item of the application has been decided (or, for a bundle, some approved and some
    not: `partly_approved`)."""

    topic: ClassVar[str] = "services.application.decided"
    application_id: UUID
    number: str
    service: ServiceName
    applicant: str
    decision: Literal["approved", "rejected", "partly_approved"]
    at: datetime


class CertificateReady(Event, frozen=True, kw_only=True):
    """An approved item's e-certificate was issued to `holder` (`certificate` is its number; its
    page is `<public_url>/api/v1/certificates/<certificate>`)."""

    topic: ClassVar[str] = "services.certificate.ready"
    application_id: UUID
    number: str  # the application's number
    certificate: str
    service: ServiceName
    holder: str
    at: datetime
