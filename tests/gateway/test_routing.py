"""Routes that take only the request are called directly; the rest keep FastAPI's handler, same behaviour."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, Request, Response
from fastapi.testclient import TestClient

from appliance.gateway.routes import embed, health, models
from appliance.gateway.routing import DirectRoute, api_router, direct_plan


seen: list[str] = []


async def first(request: Request) -> str:
    seen.append("first")
    if request.headers.get("x-fail"):
        raise PermissionError("refused")
    return "one"


async def second(request: Request) -> str:
    seen.append("second")
    return "two"


def route(router, path: str) -> DirectRoute:  # type: ignore[no-untyped-def]
    return next(r for r in router.routes if r.path == path)


def test_the_inference_routes_are_direct_and_routes_with_parameters_or_models_are_not() -> None:
    assert direct_plan(route(embed.router, "/v1/inference/embed").dependant) is not None
    assert direct_plan(route(models.router, "/v1/models").dependant) is None  # query parameters
    health_route = route(health.router, "/health")
    assert health_route.response_field is not None  # a pydantic return value: FastAPI serialises it


def test_a_direct_route_calls_its_dependencies_in_order_and_their_errors_propagate() -> None:
    router = api_router()
    seen.clear()

    @router.post("/thing")
    async def thing(request: Request, a: Annotated[str, Depends(first)], b: Annotated[str, Depends(second)]) -> Response:
        return Response(f"{a}-{b}-{request.method}", media_type="text/plain")

    app = FastAPI()
    app.include_router(router)

    @app.exception_handler(PermissionError)
    async def refused(_request: Request, exc: PermissionError) -> Response:
        return Response(str(exc), status_code=403)

    assert direct_plan(route(router, "/thing").dependant) is not None
    with TestClient(app) as client:
        assert client.post("/thing").text == "one-two-POST"
        assert seen == ["first", "second"]
        refused_answer = client.post("/thing", headers={"x-fail": "1"})
        assert (refused_answer.status_code, refused_answer.text) == (403, "refused")
