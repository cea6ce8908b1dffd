"""Standard Webhooks signing and secrets at rest, checked against the `standardwebhooks` library."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook

from channels import webhooks

MASTER = b"m" * 32


def test_the_signature_is_the_one_the_standard_library_computes() -> None:
    secret = webhooks.new_secret()
    body = b'{"specversion":"1.0","id":"x"}'
    now = int(datetime.now(UTC).timestamp())
    ours = webhooks.signature(secret, "msg_1", now, body)
    assert ours == Webhook(secret).sign("msg_1", datetime.fromtimestamp(now, UTC), body.decode())
    headers = webhooks.headers([secret, webhooks.new_secret()], "msg_1", now, body)
    assert Webhook(secret).verify(body, headers) == {"specversion": "1.0", "id": "x"}


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "whsec_",
        "sec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "whsec_c2hvcnQ=",
        "whsec_***",
        "whsec_" + "QUFB" * 30,
    ],
)
def test_a_secret_must_be_whsec_and_24_to_64_bytes(bad: str) -> None:
    with pytest.raises(webhooks.BadSecret):
        webhooks.secret_bytes(bad)


def test_secrets_are_sealed_to_their_endpoint() -> None:
    secret, endpoint = webhooks.new_secret(), uuid.uuid4()
    sealed = webhooks.seal(MASTER, secret, endpoint)
    assert secret.encode() not in sealed
    assert webhooks.unseal(MASTER, sealed, endpoint) == secret
    with pytest.raises(webhooks.BadSecret):
        webhooks.unseal(MASTER, sealed, uuid.uuid4())  # copied to another endpoint's row
    with pytest.raises(webhooks.BadSecret):
        webhooks.unseal(b"k" * 32, sealed, endpoint)  # another master secret
    assert webhooks.hint(secret).startswith(secret[:10])
    assert secret not in webhooks.hint(secret)


def test_the_settings_take_the_url_and_a_whsec_secret_together() -> None:
    from onewindow.settings import SettingsError, load_settings  # noqa: PLC0415

    good = load_settings(ioc_webhook_url="https://ioc.example/in", ioc_webhook_secret=webhooks.new_secret())
    assert good.ioc_webhook_url == "https://ioc.example/in"
    for bad in (
        {"ioc_webhook_url": "https://ioc.example/in"},
        {"ioc_webhook_secret": webhooks.new_secret()},
        {"ioc_webhook_url": "ftp://ioc.example", "ioc_webhook_secret": webhooks.new_secret()},
        {"ioc_webhook_url": "https://ioc.example/in", "ioc_webhook_secret": "plain-secret"},
        # Shaped like base64 of 24 to 64 bytes, but signing refuses them: 66 bytes, bad padding.
        {"ioc_webhook_url": "https://ioc.example/in", "ioc_webhook_secret": "whsec_" + "QUFB" * 22},
        {"ioc_webhook_url": "https://ioc.example/in", "ioc_webhook_secret": "whsec_" + "A" * 33},
    ):
        with pytest.raises(SettingsError) as problem:
            load_settings(**bad)
        assert "plain-secret" not in str(problem.value)


@pytest.mark.parametrize("secret", ["whsec_" + "QUFB" * 22, "whsec_" + "A" * 33, "whsec_" + "QUFB" * 8])
def test_the_settings_and_signing_agree_on_every_secret(secret: str) -> None:
    from onewindow.settings import SettingsError, load_settings  # noqa: PLC0415

    try:
        webhooks.secret_bytes(secret)
        signs = True
    except webhooks.BadSecret:
        signs = False
    try:
        load_settings(ioc_webhook_url="https://ioc.example/in", ioc_webhook_secret=secret)
        accepted = True
    except SettingsError:
        accepted = False
    assert accepted == signs
