"""Who reviews for a department: the one rule every part of services asks (applications'
views, documents, certificates, ratings). An officer or a supervisor holding the role in the
department's unit, or in a unit whose scope covers it (`Principal.has_role(..., within=path)`),
acts and reads for that department."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from identity.api import Principal, unit_path
from onewindow.db import Connection

__all__ = ["DEPARTMENT_STAFF", "department_paths", "reviews_for", "reviews_for_any"]

DEPARTMENT_STAFF: Final = ("officer", "supervisor")


def reviews_for(principal: Principal, path: str | None) -> bool:
    """An officer or a supervisor of the department at `path` (None: an unknown unit, no one)."""
    return path is not None and any(principal.has_role(role, within=path) for role in DEPARTMENT_STAFF)


async def department_paths(conn: Connection, departments: Iterable[str]) -> dict[str, str]:
    """Department code -> unit path, for the departments identity knows."""
    paths: dict[str, str] = {}
    for code in sorted(set(departments)):
        path = await unit_path(conn, code)
        if path is not None:
            paths[code] = path
    return paths


async def reviews_for_any(conn: Connection, principal: Principal, departments: Iterable[str]) -> bool:
    """An officer or a supervisor of any of `departments`."""
    paths = await department_paths(conn, departments)
    return any(reviews_for(principal, path) for path in paths.values())
