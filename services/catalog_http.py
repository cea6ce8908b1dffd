"""(Being written: this module's routes.)"""

from __future__ import annotations

from litestar.types import ControllerRouterHandler

CATALOG_CONTROLLERS: list[ControllerRouterHandler] = []
