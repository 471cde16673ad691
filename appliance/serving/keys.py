"""Keys over HTTP: who may see, make and change which keys.

- A key with ``api_keys:manage`` sees the keys it created, and itself; one
  that also holds ``admin:access`` sees every key of its tenant, and a box
  admin's every key (those made by the CLI included). Any other key is
  NOT_FOUND, exactly like one that does not exist.
- A key belongs to a user (``assigned_user_id``; default the caller's) and
  that user's tenant. Only an admin makes keys for another user of its
  tenant, and never for a user whose role is above its own.
- A key grants only what it holds: permissions it lacks, or that the new
  key's user's roles do not grant, are refused; a key limited to some models
  makes keys limited to (some of) those.
- No key changes its own limits (rate, budget, models) unless it holds
  ``admin:access``; it may revoke itself, and shorten its expiry, never extend it.
- A key stays inside its parent (the key that made it): it expires no later
  (unset, it inherits the parent's expiry), allows no more requests a minute
  (unset, the parent's), and its requests count against the parent's rate
  limit and budget too (tenancy/caller.py: the parent keys are scopes of its
  requests). Revoking a key revokes its descendants.
- Every change is audited in the transaction that makes it.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from appliance.accounting.budgets import Budgets
from appliance.db.keys import ApiKey, KeyStore
from appliance.permissions import DEFAULT_PERMISSIONS
from appliance.protocol.keys import KeyCreate, KeyCreated, KeyOut, KeyPatch
from appliance.serving.audit import audited, event_for, expect
from appliance.serving.context import Call
from appliance.serving.errors import ApiError, ErrorCode, validation_error
from appliance.serving.limits import budget_out, budget_warnings, to_budget
from appliance.serving.runtime import Runtime
from appliance.tenancy.caller import Caller
from appliance.tenancy.roles import grants, highest, rank
from appliance.tenancy.store import User

__all__ = ["create", "find", "key_out", "listing", "patch", "revoke", "show", "to_budget", "visible"]


def _store(runtime: Runtime) -> KeyStore:
    return runtime.keys


def _budgets(runtime: Runtime) -> Budgets:
    return runtime.accounting.budgets


def visible(caller: Caller, key: ApiKey) -> bool:
    if key.id == caller.key.id or key.created_by == caller.key.id:
        return True
    return caller.sees_tenant(key.tenant_id, "admin:access")


def key_out(key: ApiKey, budgets: Budgets, warnings: list[str] | None = None) -> KeyOut:
    status = "revoked" if key.revoked_at else "active" if key.active() else "expired"
    return KeyOut(id=key.id, name=key.name, prefix=key.prefix, permissions=list(key.permissions),
                  models=list(key.models) if key.models is not None else None, rate_limit=key.rate_limit,
                  budget=budget_out(budgets, key.id, key.budget), created_at=key.created_at,
                  created_by=key.created_by, expires_at=key.expires_at, revoked_at=key.revoked_at,
                  status=status, tenant_id=key.tenant_id, assigned_user_id=key.user_id,  # type: ignore[arg-type]
                  warnings=warnings or [])


def _check_grant(caller: Caller, permissions: list[str], models: list[str] | None) -> list[str] | None:
    """The models of the new key; refuses permissions or models the caller does not hold itself."""
    lacking = [p for p in permissions if not caller.can(p)]
    if lacking:
        raise ApiError(ErrorCode.AUTHZ_PERMISSION_DENIED, f"permissions: this API key cannot grant '{lacking[0]}', "
                                                          "which it does not hold itself.")
    own = caller.key.models
    if own is None:
        return models
    if models is None:
        return list(own)
    outside = [m for m in models if m not in own]
    if outside:
        raise ApiError(ErrorCode.AUTHZ_PERMISSION_DENIED, f"models: this API key cannot grant the model "
                                                          f"'{outside[0]}', which it may not use itself.")
    return models


def _check_expiry(expires_at: datetime | None) -> None:
    if expires_at is not None and expires_at <= datetime.now(UTC):
        raise validation_error("expires_at", "the time is in the past; give a future ISO 8601 time")


def _within_parent(parent: ApiKey | None, expires_at: datetime | None, rate_limit: int | None,
                   ) -> tuple[datetime | None, int | None]:
    """The expiry and rate limit of a key made (or changed) under ``parent``: unset ones inherit the parent's;
    asking for more than the parent has is refused."""
    if parent is None:
        return expires_at, rate_limit
    if parent.expires_at is not None:
        if expires_at is None:
            expires_at = parent.expires_at
        elif expires_at > parent.expires_at:
            raise ApiError(ErrorCode.AUTHZ_PERMISSION_DENIED, f"expires_at: a key cannot outlive the key that made "
                           f"it, which expires at {parent.expires_at.isoformat()}; give that time or an earlier one.")
    if parent.rate_limit is not None:
        if rate_limit is None:
            rate_limit = parent.rate_limit
        elif rate_limit > parent.rate_limit:
            raise ApiError(ErrorCode.AUTHZ_PERMISSION_DENIED, f"rate_limit: a key cannot allow more requests than "
                           f"the key that made it ({parent.rate_limit} a minute).")
    return expires_at, rate_limit


def _owner(runtime: Runtime, caller: Caller, user_id: str | None) -> User | None:
    """The user a new key is for: the caller's own by default; another only for an admin of the user's tenant."""
    if user_id is None or user_id == caller.user_id:
        return caller.user
    user = runtime.directory.users.get(user_id)
    if user is None or not caller.sees_tenant(user.tenant_id, "admin:access"):
        raise ApiError(ErrorCode.NOT_FOUND, f"No user '{user_id[:80]}' this key may make keys for.")
    if rank(user.roles) > rank(caller.roles):
        raise ApiError(ErrorCode.AUTHZ_PERMISSION_DENIED,
                       f"assigned_user_id: the user's role ({highest(user.roles)}) is above this key's user's; only a "
                       "user of that role or higher can make keys for them.")
    return user


async def create(call: Call, body: KeyCreate) -> KeyCreated:
    runtime, caller = call.runtime, call.caller
    owner = await asyncio.to_thread(_owner, runtime, caller, body.assigned_user_id)
    granted = grants(owner.roles) if owner is not None else grants(("tenant_user",))
    permissions = (list(body.permissions) if body.permissions
                   else [p for p in DEFAULT_PERMISSIONS if p in granted])
    models = _check_grant(caller, permissions, body.models)
    beyond = [p for p in permissions if p not in granted]
    if beyond:
        raise ApiError(ErrorCode.AUTHZ_PERMISSION_DENIED,
                       f"permissions: the key's user's roles ({', '.join(owner.roles) if owner else 'none'}) do not "
                       f"grant '{beyond[0]}'.")
    _check_expiry(body.expires_at)
    expires_at, rate_limit = _within_parent(caller.key, body.expires_at, body.rate_limit)
    tenant_id = owner.tenant_id if owner is not None else caller.tenant_id
    event = event_for(call, "api_key.create", "api_key", tenant_id=tenant_id,
                      details={"name": body.name, "assigned_user_id": owner.id if owner else None,
                               "permissions": permissions})

    def work(session: Any) -> tuple[ApiKey, str]:
        key, secret = _store(runtime).create(body.name, permissions, models, rate_limit, expires_at,
                                             to_budget(body.budget), caller.key.id,
                                             user_id=owner.id if owner else None, tenant_id=tenant_id,
                                             session=session)
        event.resource_id = key.id
        return key, secret

    key, secret = await audited(call, event, work)
    out = await asyncio.to_thread(key_out, key, _budgets(runtime))
    return KeyCreated(**out.model_dump(), key=secret)


async def find(runtime: Runtime, caller: Caller, key_id: str) -> ApiKey:
    """The key with ``key_id`` if the caller may see it; NOT_FOUND otherwise (another's key is not confirmed)."""
    key = await asyncio.to_thread(_store(runtime).get, key_id)
    if key is None or not visible(caller, key):
        raise ApiError(ErrorCode.NOT_FOUND, f"No API key '{key_id[:80]}' among the keys this key manages.")
    return key


def _check_rank(runtime: Runtime, caller: Caller, key: ApiKey) -> None:
    """Refuse changing a key of a user whose role is above the caller's (a box admin's key in a tenant)."""
    if key.user_id is None or key.user_id == caller.user_id:
        return
    owner = runtime.directory.users.get(key.user_id)
    if owner is not None and rank(owner.roles) > rank(caller.roles):
        raise ApiError(ErrorCode.AUTHZ_PERMISSION_DENIED,
                       f"key_id: the key's user's role ({highest(owner.roles)}) is above this key's user's; only a "
                       "user of that role or higher can change it.")


async def show(runtime: Runtime, caller: Caller, key_id: str) -> KeyOut:
    key = await find(runtime, caller, key_id)
    return await asyncio.to_thread(key_out, key, _budgets(runtime))


async def listing(runtime: Runtime, caller: Caller, limit: int, cursor: str | None) -> tuple[list[KeyOut], bool]:
    reach = caller.reach("admin:access")
    scope = {"box": (None, None), "tenant": (None, caller.tenant_id)}.get(reach or "", (caller.key.id, None))
    keys = await asyncio.to_thread(_store(runtime).list, *scope, after=cursor, limit=limit + 1)
    page = keys[:limit]
    budgets = _budgets(runtime)
    return await asyncio.to_thread(lambda: [key_out(key, budgets) for key in page]), len(keys) > limit


async def patch(call: Call, key_id: str, body: KeyPatch) -> KeyOut:
    runtime, caller = call.runtime, call.caller
    key = await find(runtime, caller, key_id)
    event = event_for(call, "api_key.update", "api_key", key.id, key.tenant_id,
                      details={"changes": sorted(body.model_fields_set)})
    expect(call, event)
    await asyncio.to_thread(_check_rank, runtime, caller, key)
    if key.revoked_at is not None:
        raise validation_error("key_id", f"the key '{key_id}' is revoked and cannot be changed; create a new one")
    changes: dict[str, Any] = {field: getattr(body, field) for field in body.model_fields_set}
    if "name" in changes and changes["name"] is None:
        raise validation_error("name", "a key keeps a name; send a new one or leave the field out")
    if key.id == caller.key.id and not caller.can("admin:access") and changes.keys() & {"rate_limit", "budget",
                                                                                         "models"}:
        raise ApiError(ErrorCode.AUTHZ_PERMISSION_DENIED, "An API key cannot change its own limits; ask the key "
                                                          "that made it, or an admin:access key.")
    if "models" in changes:
        changes["models"] = _check_grant(caller, [], changes["models"])
    if "budget" in changes:
        changes["budget"] = to_budget(changes["budget"])
    if "expires_at" in changes:
        _check_expiry(changes["expires_at"])
        if key.id == caller.key.id and not _shortens(key.expires_at, changes["expires_at"]):
            raise ApiError(ErrorCode.AUTHZ_PERMISSION_DENIED, "expires_at: an API key cannot extend its own expiry; "
                                                              "it may only bring it forward.")
    if changes.keys() & {"expires_at", "rate_limit"}:
        parent = await asyncio.to_thread(_store(runtime).get, key.created_by) if key.created_by else None
        expires_at, rate_limit = _within_parent(parent, changes.get("expires_at", key.expires_at),
                                                changes.get("rate_limit", key.rate_limit))
        changes.update({name: value for name, value in (("expires_at", expires_at), ("rate_limit", rate_limit))
                        if name in changes})
    updated = await audited(call, event, lambda session: _store(runtime).update(key_id, session, **changes))
    assert updated is not None
    budgets = _budgets(runtime)
    warnings = (await asyncio.to_thread(budget_warnings, budgets, updated.id, updated.budget, "key")
                if "budget" in changes else [])
    return await asyncio.to_thread(key_out, updated, budgets, warnings)


def _shortens(current: datetime | None, new: datetime | None) -> bool:
    return new is not None and (current is None or new <= current)


async def revoke(call: Call, key_id: str) -> KeyOut:
    runtime, caller = call.runtime, call.caller
    key = await find(runtime, caller, key_id)
    event = event_for(call, "api_key.delete", "api_key", key.id, key.tenant_id)
    expect(call, event)
    await asyncio.to_thread(_check_rank, runtime, caller, key)
    # Works on a full disk too: the DB's reserve makes room for it.
    await audited(call, event, lambda session: _store(runtime).revoke(key_id, session), room=True)
    return await show(runtime, caller, key_id)
