"""The one rule of who reviews for a department (services.reviewers), which applications' views,
documents, certificates and ratings all ask: an officer or a supervisor whose grant covers the
department's unit; no one else, and no one for a unit identity does not know."""

from __future__ import annotations

from identity.api import Principal, RoleGrant, unit_path
from onewindow.db import Connection
from services import reviewers
from tests.services.conftest import People


def _holding(*grants: tuple[str, str, str]) -> Principal:
    return Principal(
        subject="someone",
        client_id="portal",
        kind="person",
        scopes=frozenset(),
        roles=tuple(RoleGrant(role, unit, path) for role, unit, path in grants),
    )


async def test_officers_and_supervisors_of_the_department_review_for_it(
    conn: Connection, city: People
) -> None:
    market = await unit_path(conn, "market")
    fire = await unit_path(conn, "fire")
    assert market is not None
    assert fire is not None
    officer = _holding(("officer", "market", market))
    supervisor = _holding(("supervisor", "market", market))
    clerk = _holding(("clerk", "market", market))
    for who, expected in ((officer, True), (supervisor, True), (clerk, False)):
        assert reviewers.reviews_for(who, market) is expected
        assert await reviewers.reviews_for_any(conn, who, ["fire", "market"]) is expected
    assert not reviewers.reviews_for(officer, fire)
    assert not await reviewers.reviews_for_any(conn, officer, ["fire"])
    assert not reviewers.reviews_for(officer, None)
    assert not await reviewers.reviews_for_any(conn, officer, ["no-such-department"])
    assert await reviewers.department_paths(conn, ["market", "market", "nowhere"]) == {"market": market}
