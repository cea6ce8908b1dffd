"""(Being written: a bad rating's follow-up as the workflow engine's subject.)"""

from __future__ import annotations

from onewindow.db import Connection
from workflows import api as workflows

KIND = "rating_follow_up"


class FollowUpKind:
    name = KIND

    async def context(self, conn: Connection, subject_id: str) -> workflows.SubjectContext:
        raise NotImplementedError

    async def transitioned(self, conn: Connection, transition: workflows.Transition) -> None:
        raise NotImplementedError

    async def ended(self, conn: Connection, ending: workflows.Ending) -> None:
        raise NotImplementedError
