"""/v1/api-keys: keys over HTTP (api_keys:manage); the rules are in serving/keys.py."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.responses import JSONResponse

from appliance.gateway.auth import require
from appliance.gateway.body import parse_body
from appliance.gateway.calls import call_of
from appliance.gateway.routing import api_router
from appliance.gateway.errors import ok
from appliance.gateway.openapi import KEYED, Envelope, documented, json_ok, json_request
from appliance.protocol.keys import KeyCreate, KeyCreated, KeyList, KeyOut, KeyPatch
from appliance.serving import keys as key_service
from appliance.serving.errors import ErrorCode
from appliance.tenancy.caller import Caller

router = api_router()

Manager = Annotated[Caller, Depends(require("api_keys:manage"))]


@router.get("/v1/api-keys", **documented(ok=json_ok(Envelope[KeyList], "the keys the caller may see"),
                                         errors=KEYED))
async def list_keys(request: Request, caller: Manager, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                    cursor: str | None = None) -> JSONResponse:
    items, has_more = await key_service.listing(request.app.state, caller, limit, cursor)
    listing = KeyList(items=items, next_cursor=items[-1].id if has_more else None, has_more=has_more)
    return ok(listing.model_dump(mode="json"), request)


@router.post("/v1/api-keys", status_code=201, **documented(
    ok={201: json_ok(Envelope[KeyCreated], "the new key; its secret, `key`, is shown only now")[200]},
    errors=KEYED, body=json_request(KeyCreate)))
async def create_key(request: Request, caller: Manager) -> JSONResponse:
    created = await key_service.create(call_of(request, caller), await parse_body(request, KeyCreate))
    return ok(created.model_dump(mode="json"), request, status_code=201)


@router.get("/v1/api-keys/{key_id}", **documented(
    ok=json_ok(Envelope[KeyOut], "the key, with its budget's current spend"), errors=(*KEYED, ErrorCode.NOT_FOUND)))
async def get_key(request: Request, caller: Manager, key_id: str) -> JSONResponse:
    return ok((await key_service.show(request.app.state, caller, key_id)).model_dump(mode="json"), request)


@router.patch("/v1/api-keys/{key_id}", **documented(
    ok=json_ok(Envelope[KeyOut], "the key as changed"), errors=(*KEYED, ErrorCode.NOT_FOUND),
    body=json_request(KeyPatch)))
async def patch_key(request: Request, caller: Manager, key_id: str) -> JSONResponse:
    changed = await key_service.patch(call_of(request, caller), key_id, await parse_body(request, KeyPatch))
    return ok(changed.model_dump(mode="json"), request)


@router.delete("/v1/api-keys/{key_id}", **documented(
    ok=json_ok(Envelope[KeyOut], "the key, revoked at once"), errors=(*KEYED, ErrorCode.NOT_FOUND)))
async def revoke_key(request: Request, caller: Manager, key_id: str) -> JSONResponse:
    return ok((await key_service.revoke(call_of(request, caller), key_id)).model_dump(mode="json"), request)
