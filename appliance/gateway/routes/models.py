"""GET /v1/models and GET /v1/models/{slug}."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request, Response

from appliance.catalogue import Catalogue
from appliance.tenancy.caller import Caller
from appliance.gateway.auth import require
from appliance.gateway.errors import ok
from appliance.gateway.openapi import KEYED, Envelope, documented, json_ok
from appliance.gateway.routing import api_router
from appliance.protocol.models import ModelInfo, ModelList, OpenAIModel, OpenAIModelList
from appliance.serving.errors import ErrorCode
from appliance.serving.models import may_use, model_info, model_not_found
from appliance.supervisor.supervisor import Supervisor

router = api_router()


@router.get("/v1/models", **documented(ok=json_ok(Envelope[ModelList], "a page of models"), errors=KEYED))
async def list_models(
    request: Request,
    key: Annotated[Caller, Depends(require("models:list"))],
    modality: Annotated[str | None, Query(pattern="^(chat|embedding|image|audio|rerank)$")] = None,
    status: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: str | None = None,
) -> Response:
    catalogue: Catalogue = request.app.state.catalogue
    supervisor: Supervisor = request.app.state.supervisor
    infos = sorted((model_info(entry, supervisor.pool_for(entry)) for entry in catalogue if may_use(key, entry)),
                   key=lambda i: i.slug)
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
                    key: Annotated[Caller, Depends(require("models:list"))]) -> Response:
    catalogue: Catalogue = request.app.state.catalogue
    entry = catalogue.get(slug)
    if entry is None or not may_use(key, entry):
        raise model_not_found(slug)
    return ok(model_info(entry, request.app.state.supervisor.pool_for(entry)), request)


@router.get("/oai/v1/models", **documented(
    ok=json_ok(OpenAIModelList, "the models"), errors=KEYED, openai=True))
async def openai_models(request: Request, key: Annotated[Caller, Depends(require("models:list"))]) -> Response:
    catalogue: Catalogue = request.app.state.catalogue
    data = [OpenAIModel(id=entry.slug, capabilities=list(entry.capabilities)) for entry in catalogue
            if may_use(key, entry)]
    return Response(OpenAIModelList(data=data).model_dump_json(), media_type="application/json")


@router.get("/oai/v1/models/{model_id:path}", **documented(
    ok=json_ok(OpenAIModel, "the model"), errors=(*KEYED, ErrorCode.MODEL_NOT_FOUND), openai=True))
async def openai_model_by_id(request: Request, model_id: str,
                             key: Annotated[Caller, Depends(require("models:list"))]) -> Response:
    entry = request.app.state.catalogue.get(model_id)
    if entry is None or not may_use(key, entry):
        raise model_not_found(model_id, "GET /models")
    return Response(OpenAIModel(id=entry.slug, capabilities=list(entry.capabilities)).model_dump_json(),
                    media_type="application/json")
