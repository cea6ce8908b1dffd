"""(Being written: this module's routes.)"""

from __future__ import annotations

from litestar.types import ControllerRouterHandler

CERTIFICATE_CONTROLLERS: list[ControllerRouterHandler] = []
