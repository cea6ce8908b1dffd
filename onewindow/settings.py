"""Settings: one object, built once at start-up and passed down.

Nothing reads the environment at import time. `load_settings()` turns a bad value into a
`SettingsError` whose message is one line naming the setting, so the CLI can stop cleanly.
"""

from __future__ import annotations

import re
import zoneinfo
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from onewindow.errors import StartupError
from onewindow.text import http_url_problem, webhook_secret_key

ENV_PREFIX = "ONEWINDOW_"


class SettingsError(Exception):
    """A setting has a value OneWindow cannot run with."""


class Settings(BaseSettings):
    """Every setting of OneWindow. README.md has the same list as a table: keep them together."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "ONEWINDOW_DATABASE_URL"),
        description="PostgreSQL to use; unset: an embedded PostgreSQL in the data directory.",
    )
    redis_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("REDIS_URL", "ONEWINDOW_REDIS_URL"),
        description="Redis to use; unset: an embedded Redis in the data directory.",
    )
    data_dir: Path = Field(
        default=Path(".onewindow"),
        description="Where embedded servers and stored files live.",
    )
    env: Literal["development", "production"] = Field(
        default="development",
        description="`production` hides development conveniences (e.g. one-time codes in the log).",
    )
    timezone: str = Field(default="UTC", description="The city's time zone (IANA name).")
    weekend_days: str = Field(
        default="6,7",
        description="ISO weekdays that are not working days (1 = Monday ... 7 = Sunday), e.g. 6,7."
        " Public holidays and make-up working days are data (the calendar admin API).",
    )
    office_hours: str = Field(
        default="09:00-12:00,13:00-17:00",
        description="Office hours of a working day, local time: deadlines in hours count only these.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Least severe log level written."
    )
    log_format: Literal["json", "text"] = Field(
        default="json", description="json for machines, text for people."
    )
    db_pool_min: int = Field(default=2, ge=0, le=100, description="Connections each process keeps open.")
    db_pool_max: int = Field(default=20, ge=1, le=500, description="Most connections each process opens.")
    db_command_timeout: float = Field(default=30.0, gt=0, description="Seconds before a query is abandoned.")
    task_action_batch: int = Field(
        default=32,
        ge=1,
        le=500,
        description="Most task actions written in one transaction when they arrive together"
        " (workflows/batch.py); 1 gives every action a transaction of its own.",
    )
    task_action_batches: int = Field(
        default=8,
        ge=1,
        le=100,
        description="Most such transactions at once per process (each holds a pooled connection;"
        " at most ONEWINDOW_DB_POOL_MAX - 1, so other requests get theirs).",
    )
    db_acquire_timeout: float = Field(
        default=5.0, gt=0, description="Seconds a request waits for a database connection before a 503."
    )
    migration_lock_wait: float = Field(
        default=60.0, gt=0, description="Seconds to wait for another process that is migrating."
    )
    migration_lock_timeout: str = Field(
        default="5s",
        description="PostgreSQL lock_timeout for migration DDL, so a migration never queues traffic.",
    )
    max_body_bytes: int = Field(
        default=1_048_576, ge=1024, description="Largest request body accepted (bytes); larger is a 413."
    )
    outbox_batch_size: int = Field(
        default=100, ge=1, le=10_000, description="Events the drainer claims per transaction."
    )
    outbox_max_attempts: int = Field(
        default=10, ge=1, description="Failed deliveries before an event is dead-lettered."
    )
    outbox_sweep_seconds: float = Field(
        default=5.0, gt=0, description="Safety-net sweep interval when no NOTIFY arrives."
    )
    outbox_retry_base_seconds: float = Field(
        default=2.0, gt=0, description="First retry delay; doubles per attempt, capped at one hour."
    )
    outbox_retention_days: int = Field(
        default=30, ge=1, description="Days delivered events are kept before the daily prune."
    )
    run_worker: bool = Field(
        default=False,
        description="Run the background worker inside the HTTP process (always on with embedded servers or --demo).",
    )
    demo: bool = Field(default=False, description="Seed the demo city at start-up (as `serve --demo`).")
    queue_name: str = Field(default="onewindow:queue", description="arq queue name in Redis.")

    # Grid management.
    photo_max_bytes: int = Field(
        default=10 * 1_048_576, ge=1024, le=100 * 1_048_576, description="Largest photo accepted (bytes)."
    )
    photo_types: str = Field(
        default="image/jpeg,image/png,image/webp,image/heic",
        description="Media types a photo may have, comma-separated; the content is checked, not only the header.",
    )
    sync_max_items: int = Field(
        default=500, ge=1, le=10_000, description="Most items one offline sync batch may carry."
    )
    sync_max_bytes: int = Field(
        default=4 * 1_048_576, ge=1024, description="Largest offline sync batch accepted (bytes)."
    )

    # One-window approvals (services): documents and the counter.
    document_max_bytes: int = Field(
        default=20 * 1_048_576,
        ge=1024,
        le=200 * 1_048_576,
        description="Largest document accepted for an application (bytes); a checklist entry may set less.",
    )
    pending_documents_max_days: int = Field(
        default=10,
        ge=1,
        le=60,
        description="Most working days a counter may give for documents accepted as pending (容缺受理).",
    )
    counter_receipt_prefix: str = Field(
        default="YC-R",
        pattern=r"^[A-Z][A-Z0-9-]{0,15}$",
        description="Prefix of counter receipt numbers (YC-R-2026-000001), one sequence per year.",
    )

    # One-window approvals (services): applications.
    application_prefix: str = Field(
        default="YC",
        pattern=r"^[A-Z][A-Z0-9]{0,7}$",
        description="Prefix of application numbers (YC-2026-000123), one sequence per prefix and year.",
    )

    # Open311 GeoReport v2 (channels).
    open311_jurisdiction_id: str | None = Field(
        default=None,
        description="The jurisdiction_id Open311 clients must send if they send one; unset: any is accepted.",
    )
    open311_rate_per_minute: int = Field(
        default=30,
        ge=1,
        le=100_000,
        description="Open311 writes (reports, updates) per source address a minute.",
    )
    open311_key_rate_per_minute: int = Field(
        default=600,
        ge=1,
        le=1_000_000,
        description="Open311 writes per api key a minute, unless the key has a limit of its own.",
    )
    demo_open311_key: SecretStr = Field(
        default=SecretStr("open311-demo-key"), description="The demo city's Open311 api key."
    )

    # The IOC incident feed (channels): one endpoint from the settings; more through the admin API.
    ioc_webhook_url: str | None = Field(
        default=None,
        description="An IOC endpoint the feed is POSTed to (upserted at start); unset: none from the settings.",
    )
    ioc_webhook_secret: SecretStr | None = Field(
        default=None,
        description="Its Standard Webhooks signing secret (whsec_ and base64 of 24 to 64 bytes).",
    )
    ioc_max_attempts: int = Field(
        default=12, ge=1, le=100, description="Failed POSTs of one IOC event before it is dead-lettered."
    )
    ioc_retry_base_seconds: float = Field(
        default=2.0, gt=0, description="First retry delay of an IOC delivery; doubles per attempt, jittered."
    )
    ioc_retry_max_seconds: float = Field(
        default=600.0, gt=0, description="Longest delay between two attempts of one IOC delivery."
    )
    ioc_timeout_seconds: float = Field(
        default=10.0, gt=0, le=120, description="Seconds an IOC endpoint has to answer one POST."
    )

    @field_validator("ioc_webhook_secret")
    @classmethod
    def _whsec(cls, value: SecretStr | None) -> SecretStr | None:
        # The same parse as signing (channels.webhooks): a secret accepted here always signs.
        raw = value.get_secret_value() if value is not None else ""
        if value is not None:
            try:
                webhook_secret_key(raw)
            except ValueError:
                raise ValueError(
                    "must be a Standard Webhooks secret: whsec_ and base64 of 24 to 64 bytes"
                ) from None
        return value if raw else None

    # Identity and sign-on.
    public_url: str = Field(
        default="http://127.0.0.1:8000",
        description="The origin people and clients reach OneWindow at; the OpenID Connect issuer.",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Master secret (32+ characters) for signing-key and personal-data encryption and keyed "
        "hashes. Required in production; in development one is generated once in the data directory.",
    )
    access_token_seconds: int = Field(default=300, ge=30, le=3600, description="Access token lifetime.")
    id_token_seconds: int = Field(default=300, ge=30, le=3600, description="ID token lifetime.")
    refresh_token_days: int = Field(default=30, ge=1, le=365, description="Refresh token family lifetime.")
    authorization_code_seconds: int = Field(
        default=60, ge=10, le=600, description="Authorization code lifetime."
    )
    session_hours: int = Field(default=12, ge=1, le=720, description="Single sign-on session lifetime.")
    key_rotation_days: int = Field(
        default=90,
        ge=1,
        description="Age after which `onewindow keys rotate --if-due` makes a new signing key.",
    )
    staff_mfa: Literal["required", "optional"] | None = Field(
        default=None,
        description="TOTP for staff roles; unset: required, except in demo mode where it is optional.",
    )
    password_time_cost: int = Field(default=3, ge=1, le=20, description="argon2id passes per password hash.")
    password_memory_kib: int = Field(
        default=65536, ge=8192, description="argon2id memory per password hash (KiB)."
    )
    demo_password: SecretStr = Field(
        default=SecretStr("onewindow-demo"), description="Password of every demo account."
    )
    demo_ioc_secret: SecretStr = Field(
        default=SecretStr("ioc-demo-secret"), description="Client secret of the demo `ioc` client."
    )
    demo_console_secret: SecretStr = Field(
        default=SecretStr("console-demo-secret"), description="Client secret of the demo `console` client."
    )

    # Notifications (channels): e-mail over SMTP, SMS through an HTTP gateway.
    smtp_host: str | None = Field(
        default=None,
        description="SMTP server for e-mail; unset: e-mails are only logged (no address, no text).",
    )
    smtp_port: int = Field(default=587, ge=1, le=65535, description="SMTP server port.")
    smtp_security: Literal["starttls", "tls", "none"] = Field(
        default="starttls",
        description="starttls (upgrade after connecting), tls (implicit, port 465) or none.",
    )
    smtp_user: str | None = Field(default=None, description="SMTP user name; unset: no authentication.")
    smtp_password: SecretStr | None = Field(default=None, description="SMTP password.")
    mail_from: str = Field(
        default="OneWindow <noreply@onewindow.invalid>", description="The From address of every e-mail."
    )
    sms_gateway_url: str | None = Field(
        default=None,
        description="The SMS gateway's send URL; unset: SMS are only logged (no number, no text).",
    )
    sms_gateway_token: SecretStr | None = Field(default=None, description="Bearer token for the SMS gateway.")
    notify_max_attempts: int = Field(
        default=8, ge=1, le=50, description="Failed sends of one message before it is dead."
    )
    notify_retry_base_seconds: float = Field(
        default=30.0,
        gt=0,
        description="First retry delay of a message; doubles per attempt, capped at 6 hours.",
    )

    @field_validator("ioc_webhook_url", "sms_gateway_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        problem = http_url_problem(value) if value else None
        if problem:
            raise ValueError(f"must be an http:// or https:// URL ({problem})")
        return value or None

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("weekend_days")
    @classmethod
    def _iso_weekdays(cls, value: str) -> str:
        days = value.replace(" ", "")
        if not re.fullmatch(r"([1-7](,[1-7])*)?", days) or len(set(days.split(","))) == 7:
            raise ValueError(
                "ISO weekdays 1 (Monday) to 7 (Sunday), comma-separated, at least one working day"
            )
        return days

    @field_validator("office_hours")
    @classmethod
    def _office_hours(cls, value: str) -> str:
        span = r"([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-4]):[0-5]\d"
        if not re.fullmatch(rf"{span}(,{span})*", value.replace(" ", "")):
            raise ValueError("office hours like 09:00-12:00,13:00-17:00")
        return value.replace(" ", "")

    @field_validator("public_url")
    @classmethod
    def _origin(cls, value: str) -> str:
        if not re.fullmatch(r"https?://[^/?#\s]+", value.rstrip("/")):
            raise ValueError("must be an origin like https://onewindow.city.gov (scheme and host, no path)")
        return value.rstrip("/")

    @field_validator("secret_key")
    @classmethod
    def _long_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters")
        return value

    @field_validator("migration_lock_timeout")
    @classmethod
    def _duration(cls, value: str) -> str:
        if not re.fullmatch(r"\d+(ms|s|min)", value):
            raise ValueError("not a PostgreSQL duration like 5s or 500ms")
        return value

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("postgres://", "postgresql://")):
            raise ValueError("must start with postgresql://")
        return value or None

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value or None

    @model_validator(mode="after")
    def _ioc_pair(self) -> Settings:
        if (self.ioc_webhook_url is None) != (self.ioc_webhook_secret is None):
            raise ValueError("ONEWINDOW_IOC_WEBHOOK_URL and ONEWINDOW_IOC_WEBHOOK_SECRET go together")
        return self

    @model_validator(mode="after")
    def _pool_bounds(self) -> Settings:
        if self.db_pool_min > self.db_pool_max:
            raise ValueError("ONEWINDOW_DB_POOL_MIN must not exceed ONEWINDOW_DB_POOL_MAX")
        return self

    @property
    def photo_media_types(self) -> frozenset[str]:
        return frozenset(t.strip().lower() for t in self.photo_types.split(",") if t.strip())

    @property
    def weekend(self) -> frozenset[int]:
        return frozenset(int(day) for day in self.weekend_days.split(",") if day)

    @property
    def dsn(self) -> str:
        """DATABASE_URL, or the embedded server's once it runs."""
        if self.database_url is None:
            raise StartupError("DATABASE_URL is not set and no embedded PostgreSQL was started")
        return self.database_url

    @property
    def redis_dsn(self) -> str:
        """REDIS_URL, or the embedded server's once it runs."""
        if self.redis_url is None:
            raise StartupError("REDIS_URL is not set and no embedded Redis was started")
        return self.redis_url

    @property
    def master_secret(self) -> bytes:
        """The secret key's bytes; `onewindow.serve.ensure_secret_key` sets it before anything needs it."""
        if self.secret_key is None:
            raise StartupError("ONEWINDOW_SECRET_KEY is not set")
        return self.secret_key.get_secret_value().encode()

    @property
    def mfa_required_for_staff(self) -> bool:
        if self.staff_mfa is None:
            return not self.demo
        return self.staff_mfa == "required"

    @property
    def embedded(self) -> bool:
        """True when at least one server has to be started by OneWindow itself."""
        return self.database_url is None or self.redis_url is None


def _setting_name(loc: tuple[int | str, ...]) -> str:
    if not loc:
        return "settings"
    field = str(loc[0])
    if field.isupper():  # reported by its alias: DATABASE_URL, REDIS_URL
        return field
    return ENV_PREFIX + field.upper()


def load_settings(**overrides: object) -> Settings:
    """Build the settings from the environment, with explicit overrides on top.

    Raises `SettingsError` with one line per bad setting.
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            name = _setting_name(error["loc"])
            value = error.get("input")
            # URLs may carry passwords: never echo them.
            secret = "URL" in name or "SECRET" in name or "KEY" in name
            shown = f" (got {value!r})" if isinstance(value, str | int | float) and not secret else ""
            message = error["msg"].removeprefix("Value error, ")
            lines.append(f"setting {name}: {message}{shown}")
        raise SettingsError("; ".join(lines)) from None
