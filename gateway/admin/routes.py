"""The admin plane's route table: every module that serves under the admin listener, in order."""

from __future__ import annotations

from gateway.admin import api, console, openapi, sessions
from gateway.admin.server import RouteAdder

ROUTES: tuple[RouteAdder, ...] = (
    sessions.add_routes,
    api.add_routes,
    openapi.add_routes,
    console.add_routes,
)
"""Sign-in first; the API and the console add theirs."""
