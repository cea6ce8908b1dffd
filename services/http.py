"""Every route of one-window approvals, collected for the composition root."""

from __future__ import annotations

from litestar.types import ControllerRouterHandler

from services.applications_http import APPLICATION_CONTROLLERS
from services.catalog_http import CATALOG_CONTROLLERS
from services.certificates_http import CERTIFICATE_CONTROLLERS
from services.counter_http import COUNTER_CONTROLLERS
from services.documents_http import DOCUMENT_CONTROLLERS
from services.ratings_http import RATING_CONTROLLERS

CONTROLLERS: list[ControllerRouterHandler] = [
    *CATALOG_CONTROLLERS,
    *APPLICATION_CONTROLLERS,
    *DOCUMENT_CONTROLLERS,
    *COUNTER_CONTROLLERS,
    *CERTIFICATE_CONTROLLERS,
    *RATING_CONTROLLERS,
]
