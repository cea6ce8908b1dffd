"""Notifications: which events tell whom what, in which channel and language.

    outbox event ──(subscriber `notifications`, in the drainer's transaction)──> one
    channels.notifications row per recipient and template ──(worker, after commit)──> SMTP / SMS

The subscriber decides (template, recipient, channel, language, the template's parameters) and
writes rows; it sends nothing, so a rolled-back transaction never leaves a message behind and a
redelivered event writes nothing new (a row is unique per event, recipient and template). The
sending happens in `channels.notify_delivery`, with retries. What is sent for which event, and
what is deliberately not, is in docs/notifications.md.

Addresses are never copied here: the subscriber asks identity whether the person can be reached
at all (to pick the channel), and the sender asks again when it sends. Only verified addresses
count: an e-mail address or phone number nobody proved is theirs may be someone else's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal
from uuid import UUID
from zoneinfo import ZoneInfo

import msgspec

from channels import notify_store as store
from channels.notify_templates import Language, language_of_locale
from grid import api as grid_api
from grid.events import CaseChanged, CaseClosed, CaseReported
from identity import api as identity_api
from onewindow.db import Connection
from onewindow.events import Envelope, Subscription
from onewindow.settings import Settings
from services.events import (
    ApplicationDecided,
    ApplicationReceived,
    ApplicationReturned,
    CertificateReady,
    ServiceName,
)
from workflows.events import DeadlineBreached, DeadlineWarned

__all__ = [
    "SUBSCRIBER",
    "TOPICS",
    "Preference",
    "configure",
    "effective_preference",
    "handle_event",
    "rating_url",
    "subscription",
    "verified_address",
]

log = logging.getLogger(__name__)

SUBSCRIBER: Final = "notifications"
TOPICS: Final = (
    "grid.case.reported",
    "grid.case.changed",
    "grid.case.closed",
    "workflows.deadline.warned",
    "workflows.deadline.breached",
    "services.application.received",
    "services.application.returned",
    "services.application.decided",
    "services.certificate.ready",
)
ChannelChoice = Literal["email", "sms", "none"]

# Steps of a case's loop a citizen hears about (action -> template); every other step (register,
# handled, failed verification, rework, close, evaluate, photos, links) is the city's own business.
_DISPATCH_ACTIONS: Final = frozenset({"to_department", "to_worker"})
_CHANGE_TEMPLATES: Final = {"passed": "case_fixed", "reject": "case_rejected", "duplicate": "case_duplicate"}


@dataclass(frozen=True, slots=True)
class _Runtime:
    settings: Settings


_runtime: _Runtime | None = None


def configure(settings: Settings) -> None:
    """Per process, by the composition root: the subscriber needs the settings (the city's time
    zone, the public URL for links, the key that opens phone numbers)."""
    global _runtime  # noqa: PLW0603 - one per process, built by the composition root
    _runtime = _Runtime(settings=settings)


def _settings() -> Settings:
    if _runtime is None:
        raise RuntimeError("channels.notify.configure(settings) was not called")
    return _runtime.settings


def subscription() -> Subscription:
    return Subscription(name=SUBSCRIBER, handler=handle_event, topics=TOPICS)


def rating_url(settings: Settings, case_id: UUID) -> str:
    """Where the citizen app lets the reporter rate how their case was handled."""
    return f"{settings.public_url}/cases/{case_id}/rating"


# --- preferences ---------------------------------------------------------------------------------


class Preference(msgspec.Struct, frozen=True, kw_only=True):
    channel: ChannelChoice
    language: Language
    chosen: bool
    version: int


def verified_address(contact: identity_api.Contact, channel: Literal["email", "sms"]) -> str | None:
    """The person's address for `channel` if they proved it is theirs, else None. An unverified
    address may be anyone's (a typo, someone else's number): nothing is ever sent to one."""
    if channel == "email":
        return contact.email if contact.email_verified else None
    return contact.phone if contact.phone_verified else None


def default_channel(contact: identity_api.Contact) -> ChannelChoice:
    """What identity knows: a verified e-mail, else a verified phone, else nothing to send to."""
    if verified_address(contact, "email") is not None:
        return "email"
    if verified_address(contact, "sms") is not None:
        return "sms"
    return "none"


async def effective_preference(conn: Connection, contact: identity_api.Contact) -> Preference:
    saved = await store.preference(conn, contact.subject)
    if saved is not None:
        return Preference(
            channel=saved.channel,
            language=saved.language,
            chosen=True,
            version=saved.version,
        )
    return Preference(
        channel=default_channel(contact), language=language_of_locale(contact.locale), chosen=False, version=0
    )


def _reachable(contact: identity_api.Contact, wanted: ChannelChoice) -> Literal["email", "sms"] | None:
    """The chosen channel if the person has a verified address for it, else the other one they
    have verified; None: no verified address at all."""
    order: tuple[Literal["email", "sms"], ...] = ("sms", "email") if wanted == "sms" else ("email", "sms")
    for channel in order:
        if verified_address(contact, channel) is not None:
            return channel
    return None


# --- the subscriber ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Notice:
    template: str
    recipients: tuple[str, ...]
    params: dict[str, Any]


async def handle_event(conn: Connection, event: Envelope) -> None:
    """The outbox subscriber: write the notifications `event` calls for (none for most)."""
    settings = _settings()
    for notice in await _notices(conn, settings, event):
        for recipient in dict.fromkeys(notice.recipients):
            await _add(conn, settings, event, notice, recipient)


async def _add(
    conn: Connection, settings: Settings, event: Envelope, notice: _Notice, recipient: str
) -> None:
    contact = await identity_api.contact_details(conn, settings, recipient)
    if contact is None:
        return  # no person (an anonymous report, a machine client, a disabled account)
    preference = await effective_preference(conn, contact)
    if preference.channel == "none":
        return
    channel = _reachable(contact, preference.channel)
    notification_id = await store.add_notification(
        conn,
        event_id=event.id,
        topic=event.topic,
        recipient=recipient,
        template=notice.template,
        channel=channel or preference.channel,
        language=preference.language,
        params=notice.params if channel else None,
        state="pending" if channel else "skipped",
        last_error=None if channel else "no verified e-mail address or phone number",
    )
    if notification_id is not None:
        log.info(
            "notification queued" if channel else "notification skipped: no verified address",
            extra={"notification": str(notification_id), "template": notice.template},
        )


async def _notices(conn: Connection, settings: Settings, event: Envelope) -> list[_Notice]:
    topic = event.topic
    if topic.startswith("grid.case.") and "sequence" not in event.payload:
        # Published before grid numbered its events (migration 0012); nothing here uses the number.
        event = msgspec.structs.replace(event, payload={**event.payload, "sequence": 0})
    if topic == CaseReported.topic:
        reported = msgspec.convert(event.payload, CaseReported)
        if reported.source != "citizen":
            return []
        return await _to_reporter(conn, reported.case_id, "report_received", {"number": reported.number})
    if topic == CaseChanged.topic:
        return await _case_changed(conn, msgspec.convert(event.payload, CaseChanged))
    if topic == CaseClosed.topic:
        closed = msgspec.convert(event.payload, CaseClosed)
        if closed.status != "closed":
            return []  # a rejection was told with its reason when it happened (case_rejected)
        params = {"number": closed.number, "rating_url": rating_url(settings, closed.case_id)}
        return await _to_reporter(conn, closed.case_id, "case_closed", params)
    if topic.startswith("services."):
        return await _application(conn, settings, event)
    if topic == DeadlineWarned.topic:
        warned = msgspec.convert(event.payload, DeadlineWarned)
        return await _deadline(conn, settings, warned, "deadline_warned", ())
    if topic == DeadlineBreached.topic:
        breached = msgspec.convert(event.payload, DeadlineBreached)
        return await _deadline(conn, settings, breached, "deadline_breached", breached.notify)
    return []


async def _to_reporter(
    conn: Connection, case_id: UUID, template: str, params: dict[str, Any]
) -> list[_Notice]:
    reporter = await grid_api.citizen_reporter(conn, case_id)
    return [_Notice(template=template, recipients=(reporter,), params=params)] if reporter else []


async def _case_changed(conn: Connection, changed: CaseChanged) -> list[_Notice]:
    if changed.action in _DISPATCH_ACTIONS:
        return await _to_reporter(conn, changed.case_id, "case_dispatched", {"number": changed.number})
    template = _CHANGE_TEMPLATES.get(changed.action)
    if template is None:
        return []
    params: dict[str, Any] = {"number": changed.number}
    if template == "case_rejected":
        params["reason"] = (changed.note or "").strip() or "-"
    elif template == "case_duplicate":
        primary = await grid_api.case(conn, changed.duplicate_of) if changed.duplicate_of else None
        params["primary"] = primary.number if primary else "-"
    return await _to_reporter(conn, changed.case_id, template, params)


async def _deadline(
    conn: Connection,
    settings: Settings,
    deadline: DeadlineWarned | DeadlineBreached,
    template: str,
    notify_roles: tuple[str, ...],
) -> list[_Notice]:
    """Staff: the task's assignee, else the people holding its role nearest its unit; on a breach
    also the roles the definition names. A task without a role waits for the applicant (services'
    return for correction): that is the applicant's deadline, not staff's, and not told here."""
    recipients: list[str] = []
    if deadline.role is not None:
        if deadline.assignee:
            recipients.append(deadline.assignee)
        elif deadline.unit_path:
            recipients += await identity_api.role_holders(conn, deadline.role, within=deadline.unit_path)
    if deadline.unit_path:
        for role in notify_roles:
            recipients += await identity_api.role_holders(conn, role, within=deadline.unit_path)
    if not recipients:
        return []
    params = {
        "reference": await _reference(conn, deadline.subject_kind, deadline.subject_id),
        "step": deadline.state or deadline.subject_kind,
        "due": _local(settings, deadline.due_at),
    }
    return [_Notice(template=template, recipients=tuple(recipients), params=params)]


async def _reference(conn: Connection, subject_kind: str, subject_id: str) -> str:
    """How staff know the work: a grid case by its number, anything else by its kind and id."""
    if subject_kind == grid_api.KIND:
        try:
            case = await grid_api.case(conn, UUID(subject_id))
        except ValueError:
            case = None
        if case is not None:
            return case.number
    return f"{subject_kind} {subject_id}"


def _local(settings: Settings, at: datetime) -> str:
    return at.astimezone(ZoneInfo(settings.timezone)).strftime("%Y-%m-%d %H:%M")


# --- applications (services) ----------------------------------------------------------------------

# How a decision reads in each language (the template says "result: {decision}").
_DECISIONS: Final[dict[str, dict[Language, str]]] = {
    "approved": {"zh-CN": "准予许可", "en": "approved"},
    "rejected": {"zh-CN": "不予许可", "en": "not approved"},
    "partly_approved": {"zh-CN": "部分准予许可", "en": "partly approved"},
}


async def _language(conn: Connection, settings: Settings, subject: str) -> Language:
    """The language the applicant reads their messages in (their choice, else their locale)."""
    contact = await identity_api.contact_details(conn, settings, subject)
    if contact is None:
        return "zh-CN"
    return (await effective_preference(conn, contact)).language


def _service(name: ServiceName, language: Language) -> str:
    return name.en if language == "en" else name.zh


async def _application(conn: Connection, settings: Settings, event: Envelope) -> list[_Notice]:
    """An application's events go to its applicant, in their language: received, returned for
    correction (with the reviewer's list of what to fix and the date), decided, certificate ready."""
    if event.topic == ApplicationReceived.topic:
        received = msgspec.convert(event.payload, ApplicationReceived)
        language = await _language(conn, settings, received.applicant)
        params: dict[str, Any] = {"number": received.number, "service": _service(received.service, language)}
        return [_Notice(template="application_received", recipients=(received.applicant,), params=params)]
    if event.topic == ApplicationReturned.topic:
        returned = msgspec.convert(event.payload, ApplicationReturned)
        language = await _language(conn, settings, returned.applicant)
        params = {
            "number": returned.number,
            "service": _service(returned.service, language),
            "what_to_fix": "\n".join(f"- {line}" for line in returned.what_to_fix) or "-",
            "due": _local(settings, returned.due) if returned.due else "-",
        }
        return [_Notice(template="application_returned", recipients=(returned.applicant,), params=params)]
    if event.topic == ApplicationDecided.topic:
        decided = msgspec.convert(event.payload, ApplicationDecided)
        language = await _language(conn, settings, decided.applicant)
        params = {
            "number": decided.number,
            "service": _service(decided.service, language),
            "decision": _DECISIONS[decided.decision][language],
        }
        return [_Notice(template="application_decided", recipients=(decided.applicant,), params=params)]
    if event.topic == CertificateReady.topic:
        ready = msgspec.convert(event.payload, CertificateReady)
        language = await _language(conn, settings, ready.holder)
        params = {
            "number": ready.number,
            "service": _service(ready.service, language),
            "certificate_url": f"{settings.public_url.rstrip('/')}/api/v1/certificates/{ready.certificate}",
        }
        return [_Notice(template="certificate_ready", recipients=(ready.holder,), params=params)]
    return []
