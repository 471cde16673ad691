"""/v1/api-keys: keys over HTTP (api_keys:manage); the rules are in gateway/key_admin.py."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from appliance.db.keys import ApiKey
from appliance.gateway import key_admin
from appliance.gateway.auth import require
from appliance.gateway.body import parse_body
from appliance.gateway.errors import ok
from appliance.protocol.keys import KeyCreate, KeyList, KeyPatch

router = APIRouter()

Manager = Annotated[ApiKey, Depends(require("api_keys:manage"))]


@router.get("/v1/api-keys")
async def list_keys(request: Request, caller: Manager, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                    cursor: str | None = None) -> JSONResponse:
    items, has_more = await key_admin.listing(request, caller, limit, cursor)
    listing = KeyList(items=items, next_cursor=items[-1].id if has_more else None, has_more=has_more)
    return ok(listing.model_dump(mode="json"), request)


@router.post("/v1/api-keys")
async def create_key(request: Request, caller: Manager) -> JSONResponse:
    created = await key_admin.create(request, caller, await parse_body(request, KeyCreate))
    return ok(created.model_dump(mode="json"), request, status_code=201)


@router.get("/v1/api-keys/{key_id}")
async def get_key(request: Request, caller: Manager, key_id: str) -> JSONResponse:
    return ok((await key_admin.show(request, caller, key_id)).model_dump(mode="json"), request)


@router.patch("/v1/api-keys/{key_id}")
async def patch_key(request: Request, caller: Manager, key_id: str) -> JSONResponse:
    changed = await key_admin.patch(request, caller, key_id, await parse_body(request, KeyPatch))
    return ok(changed.model_dump(mode="json"), request)


@router.delete("/v1/api-keys/{key_id}")
async def revoke_key(request: Request, caller: Manager, key_id: str) -> JSONResponse:
    return ok((await key_admin.revoke(request, caller, key_id)).model_dump(mode="json"), request)
