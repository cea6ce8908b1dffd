"""IOC endpoints: where the feed is pushed, with their signing secrets (admins manage them; one may
come from the settings).

Rotation as Standard Webhooks describes it: add the new secret (every active secret signs, so
the receiver may switch whenever it likes), then retire the old one. An endpoint always keeps at
least one active secret. A secret is shown once, when OneWindow generates it; afterwards only a
hint (its first characters and a digest fragment) is ever shown.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Final, Literal
from uuid import UUID

import msgspec

from channels import ioc_store as store
from channels import webhooks
from onewindow.db import Connection
from onewindow.errors import FieldError, NotFound, RuleViolation, StartupError, ValidationFailed
from onewindow.settings import Settings
from onewindow.text import MAX_URL, has_control_characters, http_url_problem

CONFIGURED_NAME: Final = "IOC (from the settings)"

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
# Checked further by `_check` (onewindow.text.http_url_problem: as the HTTP client parses it).
Url = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_URL)]
# A whsec_ secret to use, or "generate" for a new one (shown once in the reply).
SecretInput = Annotated[str, msgspec.Meta(min_length=8, max_length=200)]


class NewEndpoint(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: Name
    url: Url
    secret: SecretInput = "generate"
    enabled: bool = True


class EndpointChange(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Only what is given changes. `add_secret`: a whsec_ secret or "generate"; `retire_secrets`:
    ids of active secrets to stop signing with."""

    name: Name | None = None
    url: Url | None = None
    enabled: bool | None = None
    add_secret: SecretInput | None = None
    retire_secrets: Annotated[list[UUID], msgspec.Meta(max_length=20)] = msgspec.field(default_factory=list)


class SecretView(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    hint: str
    created_at: datetime
    retired_at: datetime | None
    active: bool


class EndpointView(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    name: str
    url: str
    enabled: bool
    configured: bool
    created_at: datetime
    updated_at: datetime
    version: int
    secrets: list[SecretView]
    # Present only in the reply that generated it: store it now, it is never shown again.
    new_secret: str | None = None


def _check(name: str | None, url: str | None) -> None:
    """What the types cannot say: a name is one line of text, a URL one the HTTP client can call
    (a stored URL it refuses would fail every attempt of every delivery to it)."""
    errors = []
    if name is not None and has_control_characters(name, multiline=False):
        errors.append(FieldError(pointer="/name", detail="no control characters or line breaks"))
    problem = http_url_problem(url) if url is not None else None
    if problem is not None:
        errors.append(FieldError(pointer="/url", detail=problem))
    if errors:
        raise ValidationFailed("The endpoint cannot be saved as it is; see errors.", errors=errors)


def _secret(value: str, pointer: str) -> str:
    if value == "generate":
        return webhooks.new_secret()
    try:
        webhooks.secret_bytes(value)
    except webhooks.BadSecret as problem:
        raise ValidationFailed(
            "The secret is not a Standard Webhooks secret.",
            errors=[FieldError(pointer=pointer, detail=str(problem))],
        ) from None
    return value


async def view(conn: Connection, row: store.EndpointRow, *, new_secret: str | None = None) -> EndpointView:
    secrets = await store.secrets_of(conn, [row.id], active_only=False)
    return EndpointView(
        id=row.id,
        name=row.name,
        url=row.url,
        enabled=row.enabled,
        configured=row.configured,
        created_at=row.created_at,
        updated_at=row.updated_at,
        version=row.version,
        secrets=[
            SecretView(
                id=s.id,
                hint=s.hint,
                created_at=s.created_at,
                retired_at=s.retired_at,
                active=s.retired_at is None,
            )
            for s in secrets
        ],
        new_secret=new_secret,
    )


async def _add_secret(conn: Connection, settings: Settings, endpoint_id: UUID, secret: str) -> None:
    await store.add_secret(
        conn,
        secret_id=uuid.uuid4(),
        endpoint_id=endpoint_id,
        sealed=webhooks.seal(settings.master_secret, secret, endpoint_id),
        hint=webhooks.hint(secret),
    )


async def create(conn: Connection, settings: Settings, new: NewEndpoint, *, by: str) -> EndpointView:
    _check(new.name, new.url)
    secret = _secret(new.secret, "/secret")
    row = await store.insert_endpoint(
        conn, endpoint_id=uuid.uuid4(), name=new.name, url=new.url, configured=False, by=by
    )
    await _add_secret(conn, settings, row.id, secret)
    if not new.enabled:
        row = await store.update_endpoint(
            conn, row.id, name=row.name, url=row.url, enabled=False, at=row.updated_at
        )
    return await view(conn, row, new_secret=secret if new.secret == "generate" else None)


async def found(conn: Connection, endpoint_id: UUID, *, lock: bool = False) -> store.EndpointRow:
    row = await store.endpoint(conn, endpoint_id, lock=lock)
    if row is None:
        raise NotFound("No such IOC endpoint.")
    return row


async def change(
    conn: Connection, settings: Settings, row: store.EndpointRow, change: EndpointChange
) -> EndpointView:
    """Apply `change` to the (locked, version-checked) endpoint `row`."""
    now = datetime.now(UTC)
    _check(change.name, change.url)
    secret = _secret(change.add_secret, "/add_secret") if change.add_secret is not None else None
    active = {s.id for s in await store.secrets_of(conn, [row.id], active_only=True)}
    unknown = [
        FieldError(pointer=f"/retire_secrets/{index}", detail="not an active secret of this endpoint")
        for index, secret_id in enumerate(change.retire_secrets)
        if secret_id not in active
    ]
    if unknown:
        raise ValidationFailed("Only active secrets of this endpoint can be retired.", errors=unknown)
    if secret is None and active <= set(change.retire_secrets):
        raise RuleViolation(
            "An endpoint keeps at least one active secret: add the new one before retiring the last.",
            errors=[FieldError(pointer="/retire_secrets", detail="would leave no secret to sign with")],
        )
    if secret is not None:
        await _add_secret(conn, settings, row.id, secret)
    await store.retire_secrets(conn, row.id, list(change.retire_secrets), at=now)
    updated = await store.update_endpoint(
        conn,
        row.id,
        name=change.name if change.name is not None else row.name,
        url=change.url if change.url is not None else row.url,
        enabled=change.enabled if change.enabled is not None else row.enabled,
        at=now,
    )
    return await view(conn, updated, new_secret=secret if change.add_secret == "generate" else None)


async def set_enabled(conn: Connection, row: store.EndpointRow, enabled: bool) -> EndpointView:
    updated = await store.update_endpoint(
        conn, row.id, name=row.name, url=row.url, enabled=enabled, at=datetime.now(UTC)
    )
    return await view(conn, updated)


async def delete(conn: Connection, row: store.EndpointRow) -> None:
    if row.configured:
        raise RuleViolation(
            "This endpoint comes from ONEWINDOW_IOC_WEBHOOK_URL and would be back at the next start:"
            " unset the setting, or disable the endpoint."
        )
    await store.delete_endpoint(conn, row.id)


async def configure(
    conn: Connection, settings: Settings
) -> Literal["none", "created", "updated", "unchanged"]:
    """At start: the endpoint of ONEWINDOW_IOC_WEBHOOK_URL / _SECRET exists, has that URL, and the
    secret is among its active ones (a new secret in the settings joins the old one, which an
    admin retires when the IOC has switched: a rotation). Idempotent, and safe when several
    processes start at once (one at a time, under a lock held to the caller's commit)."""
    if settings.ioc_webhook_url is None or settings.ioc_webhook_secret is None:
        return "none"
    url, secret = settings.ioc_webhook_url, settings.ioc_webhook_secret.get_secret_value()
    # The settings' validators check both; a Settings copied with new values skips them.
    problem = http_url_problem(url)
    if problem is not None:
        raise StartupError(f"ONEWINDOW_IOC_WEBHOOK_URL: {problem}")
    try:
        webhooks.secret_bytes(secret)
    except webhooks.BadSecret as bad:
        raise StartupError(f"ONEWINDOW_IOC_WEBHOOK_SECRET: {bad}") from None
    await store.lock_configured(conn)
    row = await store.configured_endpoint(conn)
    if row is None:
        row = await store.insert_endpoint(
            conn, endpoint_id=uuid.uuid4(), name=CONFIGURED_NAME, url=url, configured=True, by="settings"
        )
        await _add_secret(conn, settings, row.id, secret)
        return "created"
    outcome: Literal["updated", "unchanged"] = "unchanged"
    if row.url != url:
        await store.update_endpoint(
            conn, row.id, name=row.name, url=url, enabled=row.enabled, at=datetime.now(UTC)
        )
        outcome = "updated"
    known = []
    for stored in await store.secrets_of(conn, [row.id], active_only=True):
        try:
            known.append(webhooks.unseal(settings.master_secret, stored.secret, row.id))
        except webhooks.BadSecret:
            continue  # sealed under another master secret: unusable, the settings' one is added
    if secret not in known:
        await _add_secret(conn, settings, row.id, secret)
        await store.touch_endpoint(conn, row.id, at=datetime.now(UTC))
        outcome = "updated"
    return outcome
