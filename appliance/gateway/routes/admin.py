"""/v1/admin: the status of every model (admin:access: a tenant's admin sees its tenant's models) and loading or
unloading one (models:manage, a box admin's); the console's data."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import JSONResponse

from appliance.tenancy.caller import Caller
from appliance.gateway.auth import require
from appliance.gateway.calls import call_of
from appliance.gateway.errors import ok
from appliance.gateway.openapi import KEYED, Envelope, documented, json_ok
from appliance.gateway.routing import api_router
from appliance.protocol.admin import AdminStatus, ModelAction
from appliance.serving import admin
from appliance.serving.errors import ErrorCode

router = api_router()

Admin = Annotated[Caller, Depends(require("admin:access"))]
Operator = Annotated[Caller, Depends(require("models:manage"))]
ACTION_ERRORS = (*KEYED, ErrorCode.MODEL_NOT_FOUND)


@router.get("/v1/admin/status", **documented(
    ok=json_ok(Envelope[AdminStatus], "every model's state, backends, restarts, memory and recent traffic"),
    errors=KEYED))
async def admin_status(request: Request, key: Admin) -> JSONResponse:
    return ok((await admin.status(request.app.state, key)).model_dump(), request)


@router.post("/v1/admin/models/{slug:path}/load", **documented(
    ok=json_ok(Envelope[ModelAction], "the model, starting (it loads in the background)"),
    errors=(*ACTION_ERRORS, ErrorCode.MODEL_UNAVAILABLE)))  # the GPU-memory ledger has no room for it
async def load_model(request: Request, slug: str, key: Operator) -> JSONResponse:
    action = ModelAction(action="load", model=await admin.load(call_of(request, key), slug))
    return ok(action.model_dump(), request)


@router.post("/v1/admin/models/{slug:path}/unload", **documented(
    ok=json_ok(Envelope[ModelAction], "the model, unloaded: its memory is free"), errors=ACTION_ERRORS))
async def unload_model(request: Request, slug: str, key: Operator) -> JSONResponse:
    action = ModelAction(action="unload", model=await admin.unload(call_of(request, key), slug))
    return ok(action.model_dump(), request)
