"""Settings: built from the environment, a bad value is one line naming the setting."""

from __future__ import annotations

import pytest

from onewindow.errors import StartupError
from onewindow.settings import SettingsError, load_settings


def test_defaults_without_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    settings = load_settings()
    assert settings.embedded
    assert str(settings.data_dir) == ".onewindow"
    with pytest.raises(StartupError, match="DATABASE_URL is not set"):
        _ = settings.dsn


def test_urls_come_from_the_unprefixed_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/db")
    monkeypatch.setenv("REDIS_URL", "redis://h:6379/0")
    monkeypatch.setenv("ONEWINDOW_OUTBOX_MAX_ATTEMPTS", "4")
    settings = load_settings()
    assert not settings.embedded
    assert settings.dsn == "postgresql://u@h/db"
    assert settings.redis_dsn == "redis://h:6379/0"
    assert settings.outbox_max_attempts == 4


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("ONEWINDOW_DB_POOL_MAX", "abc", "setting ONEWINDOW_DB_POOL_MAX: Input should be a valid integer"),
        (
            "ONEWINDOW_TIMEZONE",
            "Mars/Olympus",
            "setting ONEWINDOW_TIMEZONE: unknown time zone 'Mars/Olympus'",
        ),
        ("ONEWINDOW_LOG_LEVEL", "LOUD", "setting ONEWINDOW_LOG_LEVEL:"),
        ("ONEWINDOW_MIGRATION_LOCK_TIMEOUT", "5; DROP", "setting ONEWINDOW_MIGRATION_LOCK_TIMEOUT:"),
        ("DATABASE_URL", "mysql://root@h/db", "setting DATABASE_URL: must start with postgresql://"),
        ("REDIS_URL", "http://h", "setting REDIS_URL: must start with redis://"),
    ],
)
def test_bad_value_is_one_line_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    message = str(raised.value)
    assert message.startswith(expected)
    assert "\n" not in message


def test_url_values_are_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://admin:s3cret@h/db")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert "s3cret" not in str(raised.value)


def test_pool_bounds_are_checked_together(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONEWINDOW_DB_POOL_MIN", "30")
    monkeypatch.setenv("ONEWINDOW_DB_POOL_MAX", "10")
    with pytest.raises(SettingsError, match="ONEWINDOW_DB_POOL_MIN must not exceed ONEWINDOW_DB_POOL_MAX"):
        load_settings()
