"""/v1/users and /v1/me: users of a tenant and their roles (users:manage); rules in serving/users.py."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import JSONResponse

from appliance.gateway.auth import authenticated, require
from appliance.gateway.body import parse_body, parse_query
from appliance.gateway.calls import call_of
from appliance.gateway.errors import ok
from appliance.gateway.openapi import KEYED, Envelope, documented, json_ok, json_request
from appliance.gateway.routing import api_router
from appliance.protocol.tenancy import Me, RolesPut, UserCreate, UserList, UserListQuery, UserOut, UserPatch
from appliance.serving import users
from appliance.serving.errors import ErrorCode
from appliance.tenancy.caller import Caller

router = api_router()

Manager = Annotated[Caller, Depends(require("users:manage"))]
Anyone = Annotated[Caller, Depends(authenticated)]
FOUND = (*KEYED, ErrorCode.NOT_FOUND)


@router.get("/v1/me", **documented(ok=json_ok(Envelope[Me], "this key, its user, tenant and permissions, and the "
                                                              "user's keys"), errors=KEYED))
async def get_me(request: Request, caller: Anyone) -> JSONResponse:
    return ok((await users.me(request.app.state, caller)).model_dump(mode="json"), request)


@router.post("/v1/users", status_code=201, **documented(
    ok={201: json_ok(Envelope[UserOut], "the new user")[200]}, errors=FOUND, body=json_request(UserCreate)))
async def create_user(request: Request, caller: Manager) -> JSONResponse:
    created = await users.create(call_of(request, caller), await parse_body(request, UserCreate))
    return ok(created.model_dump(mode="json"), request, status_code=201)


@router.get("/v1/users", **documented(ok=json_ok(Envelope[UserList], "the users of the caller's tenant (a box "
                                                                     "admin: of every tenant)"), errors=FOUND))
async def list_users(request: Request, caller: Manager) -> JSONResponse:
    query = parse_query(request, UserListQuery)
    items, has_more = await users.listing(request.app.state, caller, query)
    return ok(UserList(items=items, next_cursor=items[-1].id if has_more else None,
                       has_more=has_more).model_dump(mode="json"), request)


@router.get("/v1/users/{user_id}", **documented(ok=json_ok(Envelope[UserOut], "the user"), errors=FOUND))
async def get_user(request: Request, caller: Anyone, user_id: str) -> JSONResponse:
    return ok((await users.show(request.app.state, caller, user_id)).model_dump(mode="json"), request)


@router.patch("/v1/users/{user_id}", **documented(
    ok=json_ok(Envelope[UserOut], "the user as changed"), errors=FOUND, body=json_request(UserPatch)))
async def patch_user(request: Request, caller: Manager, user_id: str) -> JSONResponse:
    changed = await users.patch(call_of(request, caller), user_id, await parse_body(request, UserPatch))
    return ok(changed.model_dump(mode="json"), request)


@router.put("/v1/users/{user_id}/roles", **documented(
    ok=json_ok(Envelope[UserOut], "the user with the new roles"), errors=FOUND, body=json_request(RolesPut)))
async def put_roles(request: Request, caller: Manager, user_id: str) -> JSONResponse:
    changed = await users.set_roles(call_of(request, caller), user_id, await parse_body(request, RolesPut))
    return ok(changed.model_dump(mode="json"), request)


@router.delete("/v1/users/{user_id}", **documented(
    ok=json_ok(Envelope[UserOut], "the user, deleted; their keys are revoked"), errors=FOUND))
async def delete_user(request: Request, caller: Manager, user_id: str) -> JSONResponse:
    return ok((await users.delete(call_of(request, caller), user_id)).model_dump(mode="json"), request)
