"""What the routes share: the service the app was built with."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import Request

if TYPE_CHECKING:
    from hybrid.service.service import Service


def app_state(request: Request) -> Service:
    """The service of the application serving ``request`` (set by ``create_app``)."""
    service: Service = request.app.state.hybrid
    return service
