"""The server bench/run measures: OneWindow's app plus what only the bench needs.

    uvicorn bench.benchapp:app --factory

- the end-to-end tests' trivial twins (`GET /e2e/open`, `GET /e2e/guarded`, tests/e2e/testapp.py),
  for the guard-cost scenario;
- the subject kind `bench`, registered with the workflow engine after `create_app` (which
  configures the engine afresh). Its subjects are the rows bench/workflow_data.py makes: the id
  `team-07/0000123` names the owner unit demo/market/team-07. Its hooks cost what a real owner's
  would at least: `transitioned` does one UPDATE of the subject's row in bench.subjects (by primary
  key); `ended` does nothing (that UPDATE already recorded the end state).

The factory builds its settings from the environment, as `onewindow serve` does, once per worker.
"""

from __future__ import annotations

from litestar import Litestar

from onewindow.app import create_app
from onewindow.db import Connection
from onewindow.logs import configure_logging
from onewindow.serve import ensure_secret_key
from onewindow.settings import load_settings
from tests.e2e.testapp import guarded_twin, open_twin
from workflows import engine
from workflows.api import Ending, SubjectContext, Transition


class BenchSubjects:
    """The subject kind of the bench's generated workflows."""

    name = "bench"

    async def context(self, conn: Connection, subject_id: str) -> SubjectContext:
        team = subject_id.partition("/")[0]
        return SubjectContext(owner_unit=f"demo/market/{team}", data={"team": team})

    async def transitioned(self, conn: Connection, transition: Transition) -> None:
        await conn.execute(
            "UPDATE bench.subjects SET state = $2, updated_at = $3 WHERE id = $1",
            transition.subject_id,
            transition.to_state,
            transition.at,
        )

    async def ended(self, conn: Connection, ending: Ending) -> None:
        return None


def app() -> Litestar:
    settings = ensure_secret_key(load_settings())
    configure_logging(settings)
    application = create_app(settings, extra_handlers=[open_twin, guarded_twin])
    engine.runtime().register(BenchSubjects())
    return application
