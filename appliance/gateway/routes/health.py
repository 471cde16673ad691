"""Liveness, readiness and Prometheus metrics; no key needed."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from appliance.metrics import REGISTRY
from appliance.supervisor.supervisor import Supervisor

router = APIRouter()


@router.get("/health")
async def health() -> dict[str, str]:
    """The gateway process answers."""
    return {"status": "ok"}


@router.get("/ready")
async def ready(request: Request) -> JSONResponse:
    """Every startup model is loaded and healthy."""
    supervisor: Supervisor = request.app.state.supervisor
    models = {slug: ",".join(w.state.value for w in pool.workers) for slug, pool in supervisor.pools.items()
              if pool.local and pool.entry.load == "startup"}
    is_ready = supervisor.startup_ready()
    return JSONResponse({"status": "ready" if is_ready else "starting", "startup_models": models},
                        status_code=200 if is_ready else 503)


@router.get("/metrics")
async def metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
