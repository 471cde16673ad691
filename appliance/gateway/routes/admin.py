"""/v1/admin: the status of every model and loading or unloading one (admin:access); the console's data."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import JSONResponse

from appliance.db.keys import ApiKey
from appliance.gateway.routing import api_router
from appliance.gateway import model_admin
from appliance.gateway.auth import require
from appliance.gateway.errors import ErrorCode, ok
from appliance.gateway.openapi import KEYED, Envelope, documented, json_ok
from appliance.protocol.admin import AdminStatus, ModelAction

router = api_router()

Admin = Annotated[ApiKey, Depends(require("admin:access"))]
ACTION_ERRORS = (*KEYED, ErrorCode.MODEL_NOT_FOUND)


@router.get("/v1/admin/status", **documented(
    ok=json_ok(Envelope[AdminStatus], "every model's state, backends, restarts, memory and recent traffic"),
    errors=KEYED))
async def admin_status(request: Request, key: Admin) -> JSONResponse:
    return ok((await model_admin.status(request)).model_dump(), request)


@router.post("/v1/admin/models/{slug:path}/load", **documented(
    ok=json_ok(Envelope[ModelAction], "the model, starting (it loads in the background)"),
    errors=(*ACTION_ERRORS, ErrorCode.MODEL_UNAVAILABLE)))  # the GPU-memory ledger has no room for it
async def load_model(request: Request, slug: str, key: Admin) -> JSONResponse:
    action = ModelAction(action="load", model=await model_admin.load(request, slug))
    return ok(action.model_dump(), request)


@router.post("/v1/admin/models/{slug:path}/unload", **documented(
    ok=json_ok(Envelope[ModelAction], "the model, unloaded: its memory is free"), errors=ACTION_ERRORS))
async def unload_model(request: Request, slug: str, key: Admin) -> JSONResponse:
    action = ModelAction(action="unload", model=await model_admin.unload(request, slug))
    return ok(action.model_dump(), request)
