"""Task actions that arrive together are written together: group commit for the engine.

Under load, most of a task action's cost is not its rows but its round trips and its commit:
BEGIN, the statement that reserves the key and locks the instance, the subject's hook, the
statement that writes the step, COMMIT, each a wake-up of the server and of PostgreSQL. The
`ActionBatcher` takes the actions waiting at the moment a connection is free and runs them in one
transaction (`engine.act_together`): one BEGIN, one locking statement, each action's hooks, one
writing statement, one COMMIT (one WAL flush) for all of them. An action's answer is sent only
after that transaction has committed, as before.

- Alone (nothing else waiting), an action runs as it always did, in a transaction of its own,
  with no added wait: a batch is whatever queued while the previous ones ran.
- An action is all or nothing still: a refusal or an error in any action of a batch rolls the
  whole batch back, and each of its actions then runs alone (`engine.act_once`), so each gets its
  own answer (the refused one its problem+json, the others their results) and nothing is half
  written. Refusals are rare under load (a double click's 409), so the replay costs little.
- Two actions on one instance never share a transaction: the later one waits for the next
  batch and then sees the first one's effect (a 409; the first reply, when it was the same
  request sent again with the same Idempotency-Key).
- At most `concurrent` batches run at once, each on a pooled connection, of at most `most`
  actions (a transaction holds its instances' locks until it commits).
- A request that goes away before its batch starts is dropped from it; once started, its action
  completes (as a request does whose client leaves during its commit) and its key keeps the reply.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence

from onewindow import idempotency
from onewindow.db import Database
from onewindow.errors import Unavailable
from workflows import engine
from workflows.views import ActionResult

log = logging.getLogger(__name__)

Outcome = ActionResult | idempotency.Stored
_Waiting = tuple[engine.TaskAction, "asyncio.Future[Outcome]"]


class ActionBatcher:
    """Task actions of one process, grouped into transactions (see the module's text)."""

    def __init__(self, db: Database, *, most: int = 32, concurrent: int = 8) -> None:
        if most < 1 or concurrent < 1:
            raise ValueError("a batch holds at least one action, and one batch at least runs")
        self.db = db
        self.most = most
        self.concurrent = concurrent
        self._waiting: deque[_Waiting] = deque()
        # Counted by the drains themselves: one that finds nothing waiting stops in the same
        # step as it counts itself out, so an action queued just after always finds a drain.
        self._draining = 0
        self._tasks: set[asyncio.Task[None]] = set()  # referenced while they run

    async def act(self, action: engine.TaskAction) -> Outcome:
        """The action's result (or the reply its key kept), once its transaction committed;
        raises what `engine.act_once` raises for it alone."""
        answer: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiting.append((action, answer))
        if self._draining < self.concurrent:
            self._draining += 1
            drain = asyncio.create_task(self._drain())
            self._tasks.add(drain)
            drain.add_done_callback(self._tasks.discard)
        return await answer

    async def _drain(self) -> None:
        try:
            await self._take_turns()
        finally:
            self._draining -= 1

    async def _take_turns(self) -> None:
        while self._waiting:
            batch: list[_Waiting] = []
            while self._waiting and len(batch) < self.most:
                waiting = self._waiting.popleft()
                if not waiting[1].done():  # its request went away: never started
                    batch.append(waiting)
            try:
                if len(batch) == 1:
                    await self._alone(batch[0])
                elif batch:
                    await self._together(batch)
            except BaseException:  # cancelled (the process is stopping): no request waits for ever
                for _, answer in batch:
                    if not answer.done():
                        answer.set_exception(Unavailable("The server is stopping; try again shortly."))
                raise

    async def _together(self, batch: Sequence[_Waiting]) -> None:
        try:
            async with self.db.transaction() as conn:
                outcomes = await engine.act_together(conn, [action for action, _ in batch])
        except Unavailable as exc:  # no connection: each alone would only wait as long again
            for _, answer in batch:
                if not answer.done():
                    answer.set_exception(Unavailable(exc.detail))
            return
        except Exception as exc:  # rolled back: each acts alone, for its own answer
            log.info(
                "task actions: a batch of %d rolled back (%s); each acts alone",
                len(batch),
                type(exc).__name__,
            )
            for waiting in batch:
                await self._alone(waiting)
            return
        put_off = []
        for waiting, outcome in zip(batch, outcomes, strict=True):
            if outcome is None:
                put_off.append(waiting)
            elif not waiting[1].done():
                waiting[1].set_result(outcome)
        self._waiting.extendleft(reversed(put_off))  # first in the next batch, in their order

    async def _alone(self, waiting: _Waiting) -> None:
        action, answer = waiting
        try:
            async with self.db.transaction() as conn:
                outcome = await engine.act_once(conn, action)
        except Exception as exc:
            if not answer.done():
                answer.set_exception(exc)
            return
        if not answer.done():
            answer.set_result(outcome)
