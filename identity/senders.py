"""How identity reaches a person with a one-time code: the `Sender` interface and a development sender.

Identity sits below channels (DESIGN.md), so it cannot call the notification service itself.
It says what it needs here, and the composition root installs an implementation in
`app.state["identity_sender"]`; until the notifications issue provides real SMS and e-mail
senders, `LogSender` writes to the log instead.
"""

from __future__ import annotations

import logging
from typing import Any, Final, Literal, Protocol

from litestar.datastructures import State

from onewindow.settings import Settings

__all__ = [
    "PURPOSE_ACCOUNT_EXISTS",
    "PURPOSE_REGISTER",
    "STATE_KEY",
    "Channel",
    "LogSender",
    "Sender",
    "sender_from_state",
]

log = logging.getLogger(__name__)

Channel = Literal["sms", "email"]

STATE_KEY: Final = "identity_sender"
# What a message is for. `account_exists` carries no code: it tells someone who tried to register
# that the phone or e-mail already has an account (the API reply does not say so, the owner may).
PURPOSE_REGISTER: Final = "register"
PURPOSE_ACCOUNT_EXISTS: Final = "account_exists"


class Sender(Protocol):
    """Delivers one message with a one-time code (or a notice, when `code` is empty).

    Raise on failure: the caller turns it into a 503 and the person asks for a new code.
    """

    async def send(self, *, channel: Channel, to: str, purpose: str, code: str, locale: str) -> None: ...


def _masked(to: str) -> str:
    """Enough of an address for a developer to tell two messages apart, not enough to be one."""
    return "*" * max(len(to) - 4, 0) + to[-4:]


class LogSender:
    """The development sender: each message becomes a log line.

    The code is logged only when ONEWINDOW_ENV is `development`, where it is the only way to
    read it. The destination is personal data (DESIGN.md: phone numbers are never logged): in
    development only its last four characters appear, in production nothing of it.
    """

    def __init__(self, settings: Settings) -> None:
        self._development = settings.env == "development"

    async def send(self, *, channel: Channel, to: str, purpose: str, code: str, locale: str) -> None:
        extra: dict[str, Any] = {"channel": channel, "purpose": purpose, "locale": locale}
        if self._development:
            extra["to_masked"] = _masked(to)
            if code:
                extra["code"] = code
        log.info("verification code sent", extra=extra)


def sender_from_state(state: State, settings: Settings) -> Sender:
    """The sender the composition root installed, or the development `LogSender`."""
    installed: Sender | None = state.get(STATE_KEY)
    return installed if installed is not None else LogSender(settings)
