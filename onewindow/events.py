"""Events: what a context announces, and the envelope a subscriber receives.

A context declares its events in its own `events.py` as subclasses of `Event`, each with a
`topic` ("grid.case.closed"). `onewindow.outbox.publish` stores one in the caller's transaction;
the drainer hands subscribers an `Envelope` whose `payload` they convert back with
`msgspec.convert(envelope.payload, TheEvent)`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

import msgspec

from onewindow.db import Connection


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every published event; subclasses set `topic` as a ClassVar."""

    topic: ClassVar[str]


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    """One stored event as a subscriber sees it. `id` is stable across redeliveries: dedupe on it."""

    id: UUID
    topic: str
    occurred_at: datetime
    payload: dict[str, Any]
    attempt: int


Handler = Callable[[Connection, Envelope], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Subscription:
    """A subscriber: a stable `name` (deliveries are recorded under it) and the topics it wants.

    The handler runs inside the drainer's transaction, in a savepoint of its own: what it writes
    through `conn` commits together with the record of its delivery, or not at all. Side effects
    outside the database (an HTTP call) may be repeated after a crash, so they must be idempotent
    by `envelope.id`.
    """

    name: str
    handler: Handler
    topics: tuple[str, ...] = ("*",)

    def wants(self, topic: str) -> bool:
        return any(fnmatch.fnmatchcase(topic, pattern) for pattern in self.topics)
