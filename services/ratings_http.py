"""Ratings and statistics over HTTP: the applicant rates a decided application (a bad rating
opens follow-ups in the departments' supervisor inboxes), the rating is read back by the
applicant and the departments, and supervisors, the command centre and admins read the figures
per item and department."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Final
from uuid import UUID

import msgspec
from litestar import Controller, Request, get, post
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.params import Body, FromPath, QueryParameter
from litestar.types import ControllerRouterHandler

from identity.api import as_guard, authenticate, current_principal, require_signed_in
from onewindow.db import Connection
from onewindow.settings import Settings
from services import ratings, stats
from services.openapi import Problems, example, reply
from services.ratings import RatingView
from services.stats import Statistics
from workflows import api as workflows

__all__ = ["RATING_CONTROLLERS"]

Level = Annotated[int, msgspec.Meta(ge=1, le=5, description="1 very dissatisfied ... 5 very satisfied")]
Comment = Annotated[str, msgspec.Meta(max_length=2000)]
DepartmentCode = Annotated[
    str | None,
    QueryParameter(
        max_length=63, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$", description="A department (unit code)."
    ),
]
ItemCode = Annotated[
    str | None,
    QueryParameter(max_length=63, pattern=r"^[a-z0-9][a-z0-9_-]*$", description="An approval item's code."),
]


class RatingRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    level: Level
    comment: Comment | None = None


_RATING_EXAMPLE: Final = {
    "application_id": "9a4e7b0c-3f1d-4c55-8b2e-1d6f0a7c9e21",
    "application_number": "YC-2026-000123",
    "level": 2,
    "comment": "It took three visits to the counter.",
    "rated_at": "2026-10-12T03:00:00Z",
    "follow_ups": [
        {
            "department": "market",
            "status": "open",
            "outcome": None,
            "opened_at": "2026-10-12T03:00:00Z",
            "closed_at": None,
            "note": None,
            "instance_id": None,
        }
    ],
}


problems: Final = Problems()


class RatingController(Controller):
    path = "/api/v1/applications/{application_id:uuid}/rating"
    tags = ["services: ratings"]  # noqa: RUF012 - litestar's declared type
    middleware = [require_signed_in()]  # noqa: RUF012 - litestar's declared type

    @post(
        "",
        operation_id="services_rate_application",
        summary="Rate a decided application (once)",
        description="The applicant rates the service on five levels, with an optional comment, once the"
        " application is decided (409 before, and the second time; 404 for anyone but the applicant). A level"
        " of 1 or 2 opens a follow-up in each department that decided an item: a task for the department's"
        " supervisors, due in 5 working days.",
        status_code=201,
        responses={
            201: reply(
                RatingView,
                "The rating, with the follow-ups it opened",
                example("A poor rating", _RATING_EXAMPLE),
            ),
            **problems(
                400,
                401,
                404,
                409,
                text={409: "Not decided yet, or already rated", 404: "No such application"},
            ),
        },
    )
    async def rate(
        self,
        request: Request[Any, Any, Any],
        conn: Connection,
        application_id: FromPath[UUID],
        data: Annotated[
            RatingRequest,
            Body(
                examples=[
                    example("Very satisfied", {"level": 5}),
                    example("Dissatisfied", {"level": 2, "comment": "It took three visits to the counter."}),
                ]
            ),
        ],
    ) -> RatingView:
        comment = data.comment.strip() if data.comment and data.comment.strip() else None
        return await ratings.rate(
            conn,
            current_principal(request),
            application_id,
            level=data.level,
            comment=comment,
            now=workflows.now(),
        )

    @get(
        "",
        operation_id="services_application_rating",
        summary="An application's rating and its follow-ups",
        description="For the applicant, officers and supervisors of the application's departments, and admins"
        " (404 for anyone else, and when it has not been rated). Staff also see each follow-up's latest note"
        " and its workflow instance.",
        responses={
            200: reply(RatingView, "The rating", example("A poor rating", _RATING_EXAMPLE)),
            **problems(401, 404, text={404: "No such application, or not rated"}),
        },
    )
    async def rating(
        self, request: Request[Any, Any, Any], conn: Connection, application_id: FromPath[UUID]
    ) -> RatingView:
        return await ratings.rating_of(conn, current_principal(request), application_id)


_FIGURES: Final = {
    "received": 12,
    "decided": 10,
    "approved": 9,
    "rejected": 1,
    "on_time": 9,
    "on_time_rate": 0.9,
    "average_working_days": 3.4,
    "correction_rate": 0.2,
    "ratings": 6,
    "average_rating": 4.5,
}


async def _may_read_statistics(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    await authenticate(connection)
    stats.may_read(current_principal(connection))


class StatisticsController(Controller):
    path = "/api/v1/services/statistics"
    tags = ["services: statistics"]  # noqa: RUF012 - litestar's declared type
    # Who may read is decided before the query is parsed: a citizen gets 403, whatever they send.
    middleware = [as_guard(_may_read_statistics)]  # noqa: RUF012 - litestar's declared type

    @get(
        "",
        operation_id="services_statistics",
        summary="Figures per approval item and per department over a period",
        description="received (items of applications submitted in the period), decided / approved / rejected"
        " (decided in the period), on_time and on_time_rate (decided within the promised working days),"
        " average_working_days (submission to decision, the applicant's waiting time left out),"
        " correction_rate (share of decided items returned for correction at least once), ratings and"
        " average_rating (ratings given in the period to applications with that item or department). The"
        " period is in the city's calendar days, both ends included (default: the last 30 days; at most 366)."
        " Supervisors see their departments, the command centre and admins everything; 403 for others.",
        responses={
            200: reply(
                Statistics,
                "The figures",
                example(
                    "One item of one department",
                    {
                        "from": "2026-10-01",
                        "to": "2026-10-31",
                        "items": [
                            {
                                **_FIGURES,
                                "item": "business-licence",
                                "department": "market",
                                "name_zh": "营业执照",
                                "name_en": "Business licence",
                            }
                        ],
                        "departments": [{**_FIGURES, "department": "market"}],
                    },
                ),
            ),
            **problems(400, 401, 403),
        },
    )
    async def statistics(
        self,
        request: Request[Any, Any, Any],
        conn: Connection,
        settings: NamedDependency[Settings],
        start: Annotated[
            date | None, QueryParameter(name="from", description="First day (YYYY-MM-DD).")
        ] = None,
        end: Annotated[date | None, QueryParameter(name="to", description="Last day (YYYY-MM-DD).")] = None,
        department: DepartmentCode = None,
        item: ItemCode = None,
    ) -> Statistics:
        return await stats.statistics(
            conn,
            current_principal(request),
            start=start,
            end=end,
            department=department,
            item=item,
            now=workflows.now(),
            timezone=settings.timezone,
        )


RATING_CONTROLLERS: list[ControllerRouterHandler] = [RatingController, StatisticsController]
