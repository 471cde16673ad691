"""Liveness, readiness and Prometheus metrics; no key needed."""

from __future__ import annotations

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from appliance.db.health import readiness_problem
from appliance.gateway.routing import api_router
from appliance.gateway.openapi import ANY_REQUEST, documented, json_ok, raw_ok
from appliance.metrics import REGISTRY
from appliance.protocol.health import Health, Readiness
from appliance.supervisor.supervisor import Supervisor

router = api_router()


@router.get("/health", **documented(ok=json_ok(Health, "the gateway answers"), errors=ANY_REQUEST, keyed=False))
async def health() -> Health:
    """The gateway process answers."""
    return Health()


READINESS = {200: {"model": Readiness, "description": "every startup model is loaded and the state DB answers"},
             503: {"model": Readiness, "description": "startup models are still loading, or the state DB cannot "
                                                      "be used (`database` says why)"}}


@router.get("/ready", **documented(ok=READINESS, errors=ANY_REQUEST, keyed=False))
async def ready(request: Request) -> JSONResponse:
    """Every startup model is loaded and healthy, and the state DB answers."""
    supervisor: Supervisor = request.app.state.supervisor
    models = {slug: ",".join(w.state.value for w in pool.workers) for slug, pool in supervisor.pools.items()
              if pool.local and pool.entry.load == "startup"}
    database = await readiness_problem(request.app.state.keys.engine)
    is_ready = supervisor.startup_ready() and database is None
    status = "unavailable" if database else "ready" if is_ready else "starting"
    readiness = Readiness(status=status, startup_models=models, database=database)
    return JSONResponse(readiness.model_dump(), status_code=200 if is_ready else 503)


@router.get("/metrics", response_class=Response, **documented(
    ok=raw_ok(["text/plain"], "Prometheus text exposition format", text=True), errors=ANY_REQUEST, keyed=False))
async def metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
