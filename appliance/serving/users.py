"""Users (``users:manage``): a tenant admin manages the users of its tenant, a box admin those of every tenant.

- A user outside the caller's reach is NOT_FOUND, like one that does not exist.
- Nobody grants a role above their own, nor changes or deletes a user whose
  role is above their own; the box keeps at least one active box admin.
- Deleting a user revokes every key of theirs at once, in the transaction
  that records it; a suspended user's keys are refused until they are active
  again.
- ``GET /v1/users/{id}`` also answers the user themselves; ``GET /v1/me`` any key.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy.orm import Session

from appliance.protocol.tenancy import Me, MeTenant, RolesPut, UserCreate, UserListQuery, UserOut, UserPatch
from appliance.serving.audit import audited, event_for, expect
from appliance.serving.context import Call
from appliance.serving.errors import ApiError, ErrorCode, validation_error
from appliance.serving.keys import key_out
from appliance.serving.limits import budget_out, budget_warnings, to_budget
from appliance.serving.runtime import Runtime
from appliance.tenancy.caller import Caller
from appliance.tenancy.roles import BOX_ADMIN, highest, rank
from appliance.tenancy.store import User


def user_out(runtime: Runtime, user: User, warnings: list[str] | None = None) -> UserOut:
    return UserOut(id=user.id, tenant_id=user.tenant_id, email=user.email, display_name=user.display_name,
                   roles=list(user.roles), status=user.status, rate_limit=user.rate_limit,
                   budget=budget_out(runtime.accounting.budgets, user.id, user.budget), created_at=user.created_at,
                   updated_at=user.updated_at, warnings=warnings or [])


def not_found(user_id: str) -> ApiError:
    return ApiError(ErrorCode.NOT_FOUND, f"No user '{user_id[:80]}' this key may see.")


def _above(caller: Caller, roles: tuple[str, ...] | list[str], what: str) -> None:
    if rank(roles) > rank(caller.roles):
        raise ApiError(ErrorCode.AUTHZ_PERMISSION_DENIED,
                       f"{what}: the role {highest(roles)} is above this key's user's ({caller.role or 'none'}); "
                       "only a user of that role or higher can do this.")


async def find(runtime: Runtime, caller: Caller, user_id: str, themselves: bool = False) -> User:
    """The user if ``users:manage`` reaches their tenant (or, with ``themselves``, they are the caller)."""
    user = await asyncio.to_thread(runtime.directory.users.get, user_id)
    if user is None or not (caller.sees_tenant(user.tenant_id, "users:manage")
                            or (themselves and user.id == caller.user_id)):
        raise not_found(user_id)
    return user


def _keeps_a_box_admin(runtime: Runtime, session: Session, user: User, roles: tuple[str, ...] | list[str]) -> None:
    """Refuse the change that would leave the box without an active box admin."""
    if BOX_ADMIN not in user.roles or BOX_ADMIN in roles:
        return
    others = [u for u in runtime.directory.users.list(None, "active", limit=100_000)
              if BOX_ADMIN in u.roles and u.id != user.id]
    if not others:
        raise validation_error("roles", "this is the box's last active box_admin; make another user box_admin first")


async def create(call: Call, body: UserCreate) -> UserOut:
    runtime, caller = call.runtime, call.caller
    tenant_id = body.tenant_id or caller.tenant_id
    if not caller.sees_tenant(tenant_id, "users:manage"):
        raise ApiError(ErrorCode.NOT_FOUND, f"No tenant '{tenant_id[:80]}' this key may add users to.")
    tenant = await asyncio.to_thread(runtime.directory.tenants.get, tenant_id)
    if tenant is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"No tenant '{tenant_id[:80]}' this key may add users to.")
    event = event_for(call, "user.create", "user", tenant_id=tenant_id,
                      details={"email": body.email, "roles": body.roles})
    expect(call, event)
    _above(caller, body.roles, "roles")

    def work(session: Session) -> User:
        if runtime.directory.users.with_email(tenant_id, body.email, session) is not None:
            raise validation_error("email", f"the tenant already has a user with the email '{body.email}'")
        user = runtime.directory.users.create(tenant_id, body.email, body.display_name, body.roles, session)
        event.resource_id = user.id
        return user

    user = await audited(call, event, work)
    return await asyncio.to_thread(user_out, runtime, user)


async def listing(runtime: Runtime, caller: Caller, query: UserListQuery) -> tuple[list[UserOut], bool]:
    tenant_id = query.tenant_id
    reach = caller.reach("users:manage")
    if reach is None:
        raise ApiError(ErrorCode.AUTHZ_PERMISSION_DENIED, "This API key lacks the permission 'users:manage'.")
    if reach == "tenant":
        if tenant_id is not None and tenant_id != caller.tenant_id:
            raise ApiError(ErrorCode.NOT_FOUND, f"No tenant '{tenant_id[:80]}' whose users this key may list.")
        tenant_id = caller.tenant_id
    users = await asyncio.to_thread(runtime.directory.users.list, tenant_id, query.status, query.cursor,
                                    query.limit + 1)
    page = users[:query.limit]
    return await asyncio.to_thread(lambda: [user_out(runtime, u) for u in page]), len(users) > query.limit


async def show(runtime: Runtime, caller: Caller, user_id: str) -> UserOut:
    user = await find(runtime, caller, user_id, themselves=True)
    return await asyncio.to_thread(user_out, runtime, user)


async def patch(call: Call, user_id: str, body: UserPatch) -> UserOut:
    runtime, caller = call.runtime, call.caller
    user = await find(runtime, caller, user_id)
    changes: dict[str, Any] = {field: getattr(body, field) for field in body.model_fields_set}
    event = event_for(call, "user.update", "user", user.id, user.tenant_id, details={"changes": sorted(changes)})
    expect(call, event)
    _above(caller, user.roles, "user_id")
    if "status" in changes and changes["status"] is None:
        raise validation_error("status", "a user keeps a status: active or suspended")
    if user.id == caller.user_id and changes.keys() & {"status", "budget", "rate_limit"}:
        raise ApiError(ErrorCode.AUTHZ_PERMISSION_DENIED, "A user cannot change their own status or limits; ask "
                                                          "another admin.")
    if "budget" in changes:
        changes["budget"] = to_budget(changes["budget"])

    def work(session: Session) -> User | None:
        if changes.get("status") == "suspended":
            _keeps_a_box_admin(runtime, session, user, ())
        return runtime.directory.users.update(user.id, session, **changes)

    updated = await audited(call, event, work)
    assert updated is not None
    warnings = (await asyncio.to_thread(budget_warnings, runtime.accounting.budgets, updated.id, updated.budget,
                                        "user") if "budget" in changes else [])
    return await asyncio.to_thread(user_out, runtime, updated, warnings)


async def set_roles(call: Call, user_id: str, body: RolesPut) -> UserOut:
    runtime, caller = call.runtime, call.caller
    user = await find(runtime, caller, user_id)
    event = event_for(call, "user.role_update", "user", user.id, user.tenant_id,
                      details={"from": list(user.roles), "to": body.roles})
    expect(call, event)
    _above(caller, user.roles, "user_id")
    _above(caller, body.roles, "roles")

    def work(session: Session) -> User | None:
        _keeps_a_box_admin(runtime, session, user, body.roles)
        return runtime.directory.users.update(user.id, session, roles=body.roles)

    updated = await audited(call, event, work)
    assert updated is not None
    return await asyncio.to_thread(user_out, runtime, updated)


async def delete(call: Call, user_id: str) -> UserOut:
    runtime, caller = call.runtime, call.caller
    user = await find(runtime, caller, user_id)
    event = event_for(call, "user.delete", "user", user.id, user.tenant_id)
    expect(call, event)
    _above(caller, user.roles, "user_id")
    if user.id == caller.user_id:
        raise validation_error("user_id", "a user cannot delete themselves; ask another admin")

    def work(session: Session) -> None:
        _keeps_a_box_admin(runtime, session, user, ())
        runtime.directory.users.delete(user.id, session)
        event.details = {"keys_revoked": runtime.keys.revoke_all(session, user_id=user.id)}

    await audited(call, event, work)
    out = await asyncio.to_thread(user_out, runtime, user)
    return out.model_copy(update={"status": "deleted"})


async def me(runtime: Runtime, caller: Caller) -> Me:
    budgets = runtime.accounting.budgets

    def build() -> Me:
        keys = runtime.keys.list(user_id=caller.user_id) if caller.user_id else [caller.key]
        return Me(key=key_out(caller.key, budgets), user=user_out(runtime, caller.user) if caller.user else None,
                  tenant=MeTenant(id=caller.tenant.id, name=caller.tenant.name), role=caller.role,
                  permissions=sorted(caller.permissions), keys=[key_out(key, budgets) for key in keys])

    return await asyncio.to_thread(build)
