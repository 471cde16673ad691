"""GET /v1/models and GET /v1/models/{slug}."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request, Response

from appliance.backends.pool import Backend
from appliance.catalogue import Catalogue, ModelEntry
from appliance.db.keys import ApiKey
from appliance.gateway.routing import api_router
from appliance.gateway.auth import require
from appliance.gateway.errors import ApiError, ErrorCode, ok
from appliance.gateway.openapi import KEYED, Envelope, documented, json_ok
from appliance.protocol.models import BackendInfo, ModelInfo, ModelList, OpenAIModel, OpenAIModelList
from appliance.supervisor.supervisor import ModelPool, Supervisor
from appliance.supervisor.local_backend import LocalBackend, WorkerState

router = api_router()

HEALTH = {
    WorkerState.READY: "healthy",
    WorkerState.STARTING: "loading",
    WorkerState.BACKOFF: "restarting",
    WorkerState.STOPPED: "idle",
    WorkerState.STOPPING: "idle",
}
# The pool's health is its best backend's.
HEALTH_ORDER = ("healthy", "loading", "restarting", "idle", "unhealthy")


def backend_health(backend: Backend) -> str:
    if isinstance(backend, LocalBackend):
        return HEALTH[backend.state]
    return "healthy" if backend.is_up() else "unhealthy"


def model_info(entry: ModelEntry, pool: ModelPool) -> ModelInfo:
    backends = [BackendInfo(id=b.backend_id, health_status=backend_health(b), in_flight=b.in_flight)
                for b in pool.backends]
    return ModelInfo(
        slug=entry.slug, display_name=entry.display_name or entry.slug, modality=entry.api_modality,
        aliases=list(entry.aliases), engine=entry.engine, context_window=entry.context_window,
        max_output_tokens=entry.max_output_tokens, status="active",
        health_status=min((b.health_status for b in backends), key=HEALTH_ORDER.index, default="unhealthy"),
        active_backend_count=pool.active_count, total_backend_count=pool.total_count, backends=backends,
    )


@router.get("/v1/models", **documented(ok=json_ok(Envelope[ModelList], "a page of models"), errors=KEYED))
async def list_models(
    request: Request,
    key: Annotated[ApiKey, Depends(require("models:list"))],
    modality: Annotated[str | None, Query(pattern="^(chat|embedding|image|audio)$")] = None,
    status: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: str | None = None,
) -> Response:
    catalogue: Catalogue = request.app.state.catalogue
    supervisor: Supervisor = request.app.state.supervisor
    infos = sorted((model_info(entry, supervisor.pool_for(entry)) for entry in catalogue), key=lambda i: i.slug)
    if key.models is not None:
        allowed = set(key.models)
        infos = [i for i in infos if allowed & {i.slug, *i.aliases}]
    if modality:
        infos = [i for i in infos if i.modality == modality]
    if status:
        infos = [i for i in infos if status in (i.status, i.health_status)]
    if cursor:
        infos = [i for i in infos if i.slug > cursor]
    page = infos[:limit]
    has_more = len(infos) > limit
    listing = ModelList(items=page, next_cursor=page[-1].slug if has_more else None, has_more=has_more)
    return ok(listing, request)


@router.get("/v1/models/{slug:path}", **documented(
    ok=json_ok(Envelope[ModelInfo], "the model"), errors=(*KEYED, ErrorCode.MODEL_NOT_FOUND)))
async def get_model(request: Request, slug: str,
                    key: Annotated[ApiKey, Depends(require("models:list"))]) -> Response:
    catalogue: Catalogue = request.app.state.catalogue
    entry = catalogue.get(slug)
    if entry is None or (key.models is not None and not set(entry.names) & set(key.models)):
        raise ApiError(ErrorCode.MODEL_NOT_FOUND, f"No model '{slug}' on this appliance; GET /v1/models lists them.")
    return ok(model_info(entry, request.app.state.supervisor.pool_for(entry)), request)


@router.get("/oai/v1/models", **documented(
    ok=json_ok(OpenAIModelList, "the models"), errors=KEYED, openai=True))
async def openai_models(request: Request, key: Annotated[ApiKey, Depends(require("models:list"))]) -> Response:
    catalogue: Catalogue = request.app.state.catalogue
    allowed = set(key.models) if key.models is not None else None
    data = [OpenAIModel(id=entry.slug) for entry in catalogue if allowed is None or allowed & set(entry.names)]
    return Response(OpenAIModelList(data=data).model_dump_json(), media_type="application/json")


@router.get("/oai/v1/models/{model_id:path}", **documented(
    ok=json_ok(OpenAIModel, "the model"), errors=(*KEYED, ErrorCode.MODEL_NOT_FOUND), openai=True))
async def openai_model_by_id(request: Request, model_id: str,
                             key: Annotated[ApiKey, Depends(require("models:list"))]) -> Response:
    entry = request.app.state.catalogue.get(model_id)
    if entry is None or (key.models is not None and not set(entry.names) & set(key.models)):
        raise ApiError(ErrorCode.MODEL_NOT_FOUND, f"No model '{model_id}' on this appliance; GET /models lists them.")
    return Response(OpenAIModel(id=entry.slug).model_dump_json(), media_type="application/json")
