"""/v1/tenants: tenant CRUD (tenants:manage, a box admin's); a tenant's admin may read its own. Rules in
serving/tenants.py."""

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
from appliance.protocol.tenancy import TenantCreate, TenantList, TenantListQuery, TenantOut, TenantPatch
from appliance.serving import tenants
from appliance.serving.errors import ErrorCode
from appliance.tenancy.caller import Caller

router = api_router()

Manager = Annotated[Caller, Depends(require("tenants:manage"))]
Anyone = Annotated[Caller, Depends(authenticated)]
FOUND = (*KEYED, ErrorCode.NOT_FOUND)


@router.post("/v1/tenants", status_code=201, **documented(
    ok={201: json_ok(Envelope[TenantOut], "the new tenant")[200]}, errors=KEYED, body=json_request(TenantCreate)))
async def create_tenant(request: Request, caller: Manager) -> JSONResponse:
    created = await tenants.create(call_of(request, caller), await parse_body(request, TenantCreate))
    return ok(created.model_dump(mode="json"), request, status_code=201)


@router.get("/v1/tenants", **documented(ok=json_ok(Envelope[TenantList], "the box's tenants"), errors=KEYED))
async def list_tenants(request: Request, caller: Manager) -> JSONResponse:
    query = parse_query(request, TenantListQuery)
    items, has_more = await tenants.listing(request.app.state, caller, query)
    return ok(TenantList(items=items, next_cursor=items[-1].id if has_more else None,
                         has_more=has_more).model_dump(mode="json"), request)


@router.get("/v1/tenants/{tenant_id}", **documented(
    ok=json_ok(Envelope[TenantOut], "the tenant, with its budget's current spend"), errors=FOUND))
async def get_tenant(request: Request, caller: Anyone, tenant_id: str) -> JSONResponse:
    return ok((await tenants.show(request.app.state, caller, tenant_id)).model_dump(mode="json"), request)


@router.patch("/v1/tenants/{tenant_id}", **documented(
    ok=json_ok(Envelope[TenantOut], "the tenant as changed"), errors=FOUND, body=json_request(TenantPatch)))
async def patch_tenant(request: Request, caller: Anyone, tenant_id: str) -> JSONResponse:
    changed = await tenants.patch(call_of(request, caller), tenant_id, await parse_body(request, TenantPatch))
    return ok(changed.model_dump(mode="json"), request)


@router.delete("/v1/tenants/{tenant_id}", **documented(
    ok=json_ok(Envelope[TenantOut], "the tenant, deleted: its users too, its keys revoked"), errors=FOUND))
async def delete_tenant(request: Request, caller: Anyone, tenant_id: str) -> JSONResponse:
    return ok((await tenants.delete(call_of(request, caller), tenant_id)).model_dump(mode="json"), request)
