"""The signed-in person's notification preferences over HTTP: how (email, sms, none) and in which
language (zh-CN, en) OneWindow tells them about their reports and applications.

There is no person id in the path: a person reads and changes only their own, so there is no
one else's to ask for. Without a saved choice the reply is the default identity's data gives.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

import msgspec
from litestar import Controller, Request, Response, get, put
from litestar.params import HeaderParameter, JSONBody

from channels import notify
from channels import notify_store as store
from channels.notify_templates import Language
from identity import api as identity_api
from onewindow.db import Connection
from onewindow.errors import FieldError, Forbidden, NotFound, RuleViolation
from onewindow.settings import Settings
from onewindow.web import check_if_match, etag

__all__ = ["NOTIFY_CONTROLLERS", "PreferencesController"]

PREFIX: Final = "/api/v1/channels/notifications"

IfMatch = Annotated[
    str | None,
    HeaderParameter(
        name="If-Match",
        required=False,
        description="The ETag as read: 412 if it changed meanwhile (optional).",
    ),
]


class PreferencesReply(msgspec.Struct, frozen=True, kw_only=True):
    channel: Literal["email", "sms", "none"]
    language: Language
    chosen: bool  # False: the default from identity (a verified e-mail: email, else a verified phone: sms)
    email_on_file: bool
    phone_on_file: bool
    # Messages go only to verified addresses: an unverified one may be someone else's.
    email_verified: bool
    phone_verified: bool


class PreferencesUpdate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    channel: Literal["email", "sms", "none"]
    language: Language


async def _contact(
    request: Request[Any, Any, Any], conn: Connection, settings: Settings
) -> identity_api.Contact:
    principal = identity_api.current_principal(request)
    if principal.kind != "person":
        raise Forbidden("Notification preferences belong to people; a client signed in on its own has none.")
    contact = await identity_api.contact_details(conn, settings, principal.subject)
    if contact is None:
        raise NotFound("No enabled person has this token's subject.")
    return contact


def _reply(preference: notify.Preference, contact: identity_api.Contact) -> Response[PreferencesReply]:
    body = PreferencesReply(
        channel=preference.channel,
        language=preference.language,
        chosen=preference.chosen,
        email_on_file=contact.email is not None,
        phone_on_file=contact.phone is not None,
        email_verified=notify.verified_address(contact, "email") is not None,
        phone_verified=notify.verified_address(contact, "sms") is not None,
    )
    return Response(body, headers={"ETag": etag(preference.version)})


def _check_reachable(contact: identity_api.Contact, channel: Literal["email", "sms"]) -> None:
    """A channel is chosen only with a verified address for it: nothing goes to an unverified one."""
    if channel == "email":
        if contact.email is None:
            detail, what = "no e-mail address on the account", "add one first, or choose sms"
        elif not contact.email_verified:
            detail, what = "the e-mail address is not verified", "verify it first, or choose sms"
        else:
            return
    elif contact.phone is None:
        detail, what = "no phone number on the account", "add one first, or choose email"
    elif not contact.phone_verified:
        detail, what = "the phone number is not verified", "verify it first, or choose email"
    else:
        return
    raise RuleViolation(
        f"Notifications go only to verified addresses, and {detail}: {what}.",
        errors=[FieldError(pointer="/channel", detail=detail)],
    )


class PreferencesController(Controller):
    path = f"{PREFIX}/preferences"
    tags = ["notifications"]  # noqa: RUF012 - litestar's declared type
    middleware = [identity_api.require_signed_in()]  # noqa: RUF012 - litestar's declared type

    @get("", operation_id="getNotificationPreferences", summary="My notification channel and language")
    async def read(
        self, request: Request[Any, Any, Any], conn: Connection, settings: Settings
    ) -> Response[PreferencesReply]:
        contact = await _contact(request, conn, settings)
        return _reply(await notify.effective_preference(conn, contact), contact)

    @put(
        "",
        operation_id="putNotificationPreferences",
        summary="Choose my notification channel (email, sms, none) and language (zh-CN, en)",
        description="email needs a verified e-mail address on the account and sms a verified phone number"
        " (422 otherwise: nothing is sent to an unverified address); none: nothing is sent."
        " An If-Match with the ETag read makes a stale change a 412.",
    )
    async def update(
        self,
        request: Request[Any, Any, Any],
        conn: Connection,
        settings: Settings,
        data: JSONBody[PreferencesUpdate],
        if_match: IfMatch = None,
    ) -> Response[PreferencesReply]:
        contact = await _contact(request, conn, settings)
        if if_match is not None:
            current = await store.preference(conn, contact.subject)
            check_if_match(if_match, current.version if current else 0, what="notification preference")
        if data.channel != "none":
            _check_reachable(contact, data.channel)
        saved = await store.save_preference(
            conn, contact.subject, channel=data.channel, language=data.language
        )
        preference = notify.Preference(
            channel=data.channel, language=data.language, chosen=True, version=saved.version
        )
        return _reply(preference, contact)


NOTIFY_CONTROLLERS: Final = [PreferencesController]
