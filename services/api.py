"""What other contexts and the composition root may use of one-window approvals.

- the composition root: `configure(settings)` (per process: the application hooks sign
  certificates and number applications with them), `subject_kinds()` (an application's item
  under review, and a bad rating's follow-up, as the workflow engine's subjects), `install(conn)`
  (the review and follow-up definitions, installed at start) and `CONTROLLERS`;
- channels: the events in `services.events`.
"""

from __future__ import annotations

from importlib import resources

from onewindow.db import Connection
from services import ratings, review
from services.applications import configure
from services.http import CONTROLLERS
from workflows import api as workflows

__all__ = ["CONTROLLERS", "configure", "definitions", "install", "subject_kinds"]


def subject_kinds() -> list[workflows.SubjectKind]:
    return [review.ItemKind(), ratings.FollowUpKind()]


def definitions() -> list[str]:
    """The workflow definitions services ships (services/workflows/*.yaml), as YAML text."""
    folder = resources.files("services").joinpath("workflows")
    return [
        entry.read_text(encoding="utf-8")
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".yaml")
    ]


async def install(conn: Connection) -> None:
    """Install services' workflow definitions unless the city already has them (an
    administrator's later versions stay)."""
    for text in definitions():
        await workflows.install_definition(conn, text, media_type="yaml", by="services")
