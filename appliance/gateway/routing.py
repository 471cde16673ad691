"""The gateway's routers: FastAPI's, with a direct call for routes that take nothing but the request.

Every hot route (each inference call) reads its own body after authentication
and returns a ready ``Response``; its only dependency is the API-key check,
which takes the request alone. For such a route FastAPI's general machinery
(solving dependencies, sorting parameters, serialising a return value) does
nothing but cost about a tenth of the gateway's CPU per relayed request, so
:class:`DirectRoute` calls the dependencies and the endpoint itself. Any route
with a path, query, header, cookie or body parameter, or a response model to
serialise its return value with, keeps FastAPI's handler.
The OpenAPI document is built from the same route objects either way.

Each route also says, once, what its requests are: which surface they are on
(ScaiGrid's ``/v1`` or the OpenAI layer under ``/oai/``: it decides the shape of
every error), and whether they are inference to meter (the outermost layer then
settles and records them). It writes both into the request's state before
anything else runs, authentication included.

Dependencies declared on ``include_router`` are not seen by the direct call:
the gateway declares none there (authentication is per route).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.routing import Match
from starlette.types import ASGIApp, Scope

from appliance.serving.context import Surface

Call = Callable[..., Awaitable[Any]]

OPENAI_PREFIX = "/oai/"


def surface_for_path(path: str) -> Surface:
    """The surface of a route declared at ``path`` (or of a request no route claimed: a 404, a parser refusal)."""
    return Surface.OPENAI if path.startswith(OPENAI_PREFIX) else Surface.SCAIGRID


def surface_of(scope: Scope) -> Surface:
    """The surface the request's route declared; for a request no route claimed, its path's."""
    surface = scope.get("state", {}).get("surface")
    return surface if surface is not None else surface_for_path(scope["path"])


def openai_twin(app: ASGIApp, scope: Scope) -> str | None:
    """For a ``/v1/…`` path no route claims (``/v1/chat/completions``): its twin under ``/oai/``, if one is served."""
    path = scope["path"]
    if not path.startswith("/v1/"):
        return None
    twin = {**scope, "path": "/oai" + path}
    routes = getattr(app, "routes", ())
    return twin["path"] if any(route.matches(twin)[0] is not Match.NONE for route in routes) else None


def _takes_only_the_request(dependant: Dependant) -> bool:
    return (inspect.iscoroutinefunction(dependant.call)
            and not (dependant.path_params or dependant.query_params or dependant.header_params
                     or dependant.cookie_params or dependant.body_params)
            and dependant.websocket_param_name is None and dependant.http_connection_param_name is None
            and dependant.response_param_name is None and dependant.background_tasks_param_name is None
            and dependant.security_scopes_param_name is None)


def direct_plan(dependant: Dependant) -> tuple[Call, str | None, list[tuple[str, Call]]] | None:
    """The endpoint, its request parameter and its ``(name, dependency)`` pairs; None if FastAPI must handle it."""
    if not _takes_only_the_request(dependant):
        return None
    dependencies: list[tuple[str, Call]] = []
    for sub in dependant.dependencies:
        if sub.name is None or sub.dependencies or not _takes_only_the_request(sub) or sub.request_param_name is None:
            return None
        dependencies.append((sub.name, sub.call))  # type: ignore[arg-type]
    return dependant.call, dependant.request_param_name, dependencies  # type: ignore[return-value]


class DirectRoute(APIRoute):
    metered = False  # an inference route: its requests are settled and recorded as usage

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        surface, metered = surface_for_path(self.path_format), self.metered
        plan = direct_plan(self.dependant)
        if plan is None or self.response_field is not None:  # a return value to validate and serialise
            framework = super().get_route_handler()

            async def marked(request: Request) -> Response:
                request.scope.setdefault("state", {}).update(surface=surface, metered=metered)
                return await framework(request)

            return marked
        endpoint, request_name, dependencies = plan

        async def handler(request: Request) -> Response:
            request.scope.setdefault("state", {}).update(surface=surface, metered=metered)
            values = {name: await dependency(request) for name, dependency in dependencies}
            if request_name is not None:
                values[request_name] = request
            response = await endpoint(**values)
            if not isinstance(response, Response):
                raise TypeError(f"{self.path}: a direct route's endpoint must return a Response")
            return response

        return handler


class MeteredRoute(DirectRoute):
    metered = True


def api_router(metered: bool = False, **options: Any) -> APIRouter:
    """The router every routes module registers on (``metered``: its routes are inference; ``options`` as for
    ``APIRouter``)."""
    return APIRouter(route_class=MeteredRoute if metered else DirectRoute, **options)
