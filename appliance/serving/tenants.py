"""Tenants (``tenants:manage``, a box admin's): create, list, change, delete; and a tenant's own view of itself.

Deleting a tenant deletes its users and revokes every key of it at once, in
the transaction that records it. The default tenant, which holds the box's
first admin, and the caller's own tenant cannot be deleted or suspended.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from appliance.db.tables import DEFAULT_TENANT_ID
from appliance.engines.capacity import concurrency
from appliance.protocol.tenancy import Share, TenantCreate, TenantListQuery, TenantOut, TenantPatch
from appliance.serving.audit import audited, event_for, expect
from appliance.serving.context import Call
from appliance.serving.errors import ApiError, ErrorCode, validation_error
from appliance.serving.limits import budget_out, budget_warnings, to_budget
from appliance.serving.runtime import Runtime
from appliance.tenancy.caller import Caller
from appliance.tenancy.store import Tenant


def tenant_out(runtime: Runtime, tenant: Tenant, warnings: list[str] | None = None) -> TenantOut:
    return TenantOut(id=tenant.id, name=tenant.name, status=tenant.status,
                     models=list(tenant.models) if tenant.models is not None else None, rate_limit=tenant.rate_limit,
                     budget=budget_out(runtime.accounting.budgets, tenant.id, tenant.budget),
                     share=Share(weight=tenant.share_weight, min_concurrency=tenant.min_concurrency),
                     created_at=tenant.created_at, updated_at=tenant.updated_at, warnings=warnings or [])


def check_share(runtime: Runtime, models: Sequence[str] | None, share: Share) -> None:
    """A minimum concurrency no model of the tenant can run is refused, naming the largest it can."""
    if not share.min_concurrency:
        return
    entries = [entry for entry in runtime.catalogue if models is None or set(entry.names) & set(models)]
    largest = max((concurrency(entry) for entry in entries), default=0)
    if share.min_concurrency > largest:
        raise validation_error("share.min_concurrency", f"{share.min_concurrency} calls at once is more than any "
                                                        f"model of the tenant runs (at most {largest}); a minimum "
                                                        "is capped at each model's capacity anyway")


def not_found(tenant_id: str) -> ApiError:
    return ApiError(ErrorCode.NOT_FOUND, f"No tenant '{tenant_id[:80]}' this key may see.")


def check_models(runtime: Runtime, models: list[str] | None) -> None:
    """A tenant's allow-list names models of the catalogue (by slug or alias)."""
    unknown = [name for name in models or [] if runtime.catalogue.get(name) is None]
    if unknown:
        raise validation_error("models", f"no model '{unknown[0]}' in this appliance's catalogue; GET /v1/models "
                                         "lists them")


def _manager(caller: Caller) -> None:
    if caller.reach("tenants:manage") != "box":
        raise ApiError(ErrorCode.AUTHZ_PERMISSION_DENIED, "Only a box admin's key (tenants:manage) manages tenants.")


def _name_free(runtime: Runtime, session: Session, name: str, tenant_id: str | None = None) -> None:
    other = runtime.directory.tenants.named(name, session)
    if other is not None and other.id != tenant_id:
        raise validation_error("name", f"a tenant named '{name}' already exists; tenant names are unique")


async def create(call: Call, body: TenantCreate) -> TenantOut:
    runtime = call.runtime
    _manager(call.caller)
    check_models(runtime, body.models)
    share = body.share or Share()
    check_share(runtime, body.models, share)
    event = event_for(call, "tenant.create", "tenant", details={"name": body.name})

    def work(session: Session) -> Tenant:
        _name_free(runtime, session, body.name)
        tenant = runtime.directory.tenants.create(body.name, body.models, body.rate_limit, to_budget(body.budget),
                                                  session=session, share_weight=share.weight,
                                                  min_concurrency=share.min_concurrency)
        event.resource_id = event.tenant_id = tenant.id
        return tenant

    tenant = await audited(call, event, work)
    return await asyncio.to_thread(tenant_out, runtime, tenant)


async def listing(runtime: Runtime, caller: Caller, query: TenantListQuery) -> tuple[list[TenantOut], bool]:
    _manager(caller)
    tenants = await asyncio.to_thread(runtime.directory.tenants.list, query.status, query.cursor, query.limit + 1)
    page = tenants[:query.limit]
    return await asyncio.to_thread(lambda: [tenant_out(runtime, t) for t in page]), len(tenants) > query.limit


async def find(runtime: Runtime, caller: Caller, tenant_id: str) -> Tenant:
    """The tenant if the caller may see it: any for a box admin, its own for a tenant's admin; else NOT_FOUND."""
    if not (caller.reach("tenants:manage") == "box" or (tenant_id == caller.tenant_id
                                                        and caller.can("admin:access"))):
        raise not_found(tenant_id)
    tenant = await asyncio.to_thread(runtime.directory.tenants.get, tenant_id)
    if tenant is None:
        raise not_found(tenant_id)
    return tenant


async def show(runtime: Runtime, caller: Caller, tenant_id: str) -> TenantOut:
    tenant = await find(runtime, caller, tenant_id)
    return await asyncio.to_thread(tenant_out, runtime, tenant)


async def patch(call: Call, tenant_id: str, body: TenantPatch) -> TenantOut:
    runtime, caller = call.runtime, call.caller
    tenant = await find(runtime, caller, tenant_id)
    _manager(caller)
    changes: dict[str, Any] = {field: getattr(body, field) for field in body.model_fields_set}
    event = event_for(call, "tenant.update", "tenant", tenant.id, tenant.id, details={"changes": sorted(changes)})
    expect(call, event)
    for field in ("name", "status"):
        if field in changes and changes[field] is None:
            raise validation_error(field, f"a tenant keeps a {field}; send a new one or leave the field out")
    if changes.get("status") == "suspended" and tenant.id in (caller.tenant_id, DEFAULT_TENANT_ID):
        raise validation_error("status", "the default tenant and the caller's own tenant cannot be suspended")
    if "models" in changes:
        check_models(runtime, changes["models"])
    if "budget" in changes:
        changes["budget"] = to_budget(changes["budget"])
    if "share" in changes:
        share = changes.pop("share") or Share()
        check_share(runtime, changes.get("models", tenant.models), share)
        changes.update(share_weight=share.weight, min_concurrency=share.min_concurrency)

    def work(session: Session) -> Tenant | None:
        if "name" in changes:
            _name_free(runtime, session, changes["name"], tenant.id)
        return runtime.directory.tenants.update(tenant.id, session, **changes)

    updated = await audited(call, event, work)
    assert updated is not None
    warnings = (await asyncio.to_thread(budget_warnings, runtime.accounting.budgets, updated.id, updated.budget,
                                        "tenant") if "budget" in changes else [])
    return await asyncio.to_thread(tenant_out, runtime, updated, warnings)


async def delete(call: Call, tenant_id: str) -> TenantOut:
    runtime, caller = call.runtime, call.caller
    tenant = await find(runtime, caller, tenant_id)
    _manager(caller)
    event = event_for(call, "tenant.delete", "tenant", tenant.id, tenant.id)
    expect(call, event)
    if tenant.id in (caller.tenant_id, DEFAULT_TENANT_ID):
        raise validation_error("tenant_id", "the default tenant and the caller's own tenant cannot be deleted")

    def work(session: Session) -> None:
        runtime.directory.tenants.delete(tenant.id, session)
        revoked = runtime.keys.revoke_all(session, tenant_id=tenant.id)
        event.details = {"keys_revoked": revoked}

    await audited(call, event, work)
    out = await asyncio.to_thread(tenant_out, runtime, tenant)
    return out.model_copy(update={"status": "deleted"})
