"""(Being written: this module's routes.)"""

from __future__ import annotations

from litestar.types import ControllerRouterHandler

RATING_CONTROLLERS: list[ControllerRouterHandler] = []
