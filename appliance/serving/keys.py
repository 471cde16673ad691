"""Keys over HTTP: who may see, make and change which keys.

- A key with ``api_keys:manage`` sees the keys it created, and itself; one that
  also holds ``admin:access`` sees every key (those made by the CLI included).
- A key grants only what it holds: permissions it lacks are refused, and a key
  limited to some models makes keys limited to (some of) those.
- No key changes its own limits (rate, budget, models) unless it holds
  ``admin:access``; it may revoke itself, and shorten its expiry, never extend it.
- A key stays inside its parent (the key that made it): it expires no later
  (unset, it inherits the parent's expiry), allows no more requests a minute
  (unset, the parent's), and its requests count against the parent's rate
  limit too (gateway/auth.py). Revoking a key revokes its descendants.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from appliance.accounting.budgets import Budgets
from appliance.db.keys import ApiKey, Budget, KeyStore
from appliance.permissions import DEFAULT_PERMISSIONS
from appliance.protocol.keys import BudgetIn, BudgetOut, KeyCreate, KeyCreated, KeyOut, KeyPatch, Spent
from appliance.serving.errors import ApiError, ErrorCode, validation_error
from appliance.serving.runtime import Runtime


def _store(runtime: Runtime) -> KeyStore:
    return runtime.keys


def _budgets(runtime: Runtime) -> Budgets:
    return runtime.accounting.budgets


def is_admin(key: ApiKey) -> bool:
    return "admin:access" in key.permissions


def visible(caller: ApiKey, key: ApiKey) -> bool:
    return is_admin(caller) or key.id == caller.id or key.created_by == caller.id


def to_budget(budget: BudgetIn | None) -> Budget | None:
    if budget is None:
        return None
    return Budget(budget.period, budget.tokens, budget.images,
                  float(budget.audio_seconds) if budget.audio_seconds is not None else None)


def key_out(key: ApiKey, budgets: Budgets) -> KeyOut:
    budget = None
    if key.budget is not None:
        spend = budgets.spend(key)
        budget = BudgetOut(
            period=key.budget.period, tokens=key.budget.tokens, images=key.budget.images,  # type: ignore[arg-type]
            audio_seconds=key.budget.audio_seconds, period_resets_at=spend[0].resets_at if spend else None,
            spend=[Spent(unit=s.unit, limit=s.limit, spent=round(s.spent, 3), reserved=round(s.reserved, 3),
                         remaining=round(max(0.0, s.limit - s.spent - s.reserved), 3)) for s in spend])
    status = "revoked" if key.revoked_at else "active" if key.active() else "expired"
    return KeyOut(id=key.id, name=key.name, prefix=key.prefix, permissions=list(key.permissions),
                  models=list(key.models) if key.models is not None else None, rate_limit=key.rate_limit,
                  budget=budget, created_at=key.created_at, created_by=key.created_by, expires_at=key.expires_at,
                  revoked_at=key.revoked_at, status=status)  # type: ignore[arg-type]


def _check_grant(caller: ApiKey, permissions: list[str], models: list[str] | None) -> list[str] | None:
    """The models of the new key; refuses permissions or models the caller does not hold itself."""
    lacking = [p for p in permissions if p not in caller.permissions]
    if lacking:
        raise ApiError(ErrorCode.AUTHZ_PERMISSION_DENIED, f"permissions: this API key cannot grant '{lacking[0]}', "
                                                          "which it does not hold itself.")
    if caller.models is None:
        return models
    if models is None:
        return list(caller.models)
    outside = [m for m in models if m not in caller.models]
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


async def create(runtime: Runtime, caller: ApiKey, body: KeyCreate) -> KeyCreated:
    permissions = list(body.permissions) if body.permissions else list(DEFAULT_PERMISSIONS)
    models = _check_grant(caller, permissions, body.models)
    _check_expiry(body.expires_at)
    expires_at, rate_limit = _within_parent(caller, body.expires_at, body.rate_limit)
    key, secret = await asyncio.to_thread(
        _store(runtime).create, body.name, permissions, models, rate_limit, expires_at, to_budget(body.budget),
        caller.id)
    out = await asyncio.to_thread(key_out, key, _budgets(runtime))
    return KeyCreated(**out.model_dump(), key=secret)


async def find(runtime: Runtime, caller: ApiKey, key_id: str) -> ApiKey:
    """The key with ``key_id`` if the caller may see it; NOT_FOUND otherwise (another's key is not confirmed)."""
    key = await asyncio.to_thread(_store(runtime).get, key_id)
    if key is None or not visible(caller, key):
        raise ApiError(ErrorCode.NOT_FOUND, f"No API key '{key_id}' among the keys this key manages.")
    return key


async def show(runtime: Runtime, caller: ApiKey, key_id: str) -> KeyOut:
    key = await find(runtime, caller, key_id)
    return await asyncio.to_thread(key_out, key, _budgets(runtime))


async def listing(runtime: Runtime, caller: ApiKey, limit: int, cursor: str | None) -> tuple[list[KeyOut], bool]:
    keys = await asyncio.to_thread(_store(runtime).list, None if is_admin(caller) else caller.id, cursor, limit + 1)
    page = keys[:limit]
    budgets = _budgets(runtime)
    return await asyncio.to_thread(lambda: [key_out(key, budgets) for key in page]), len(keys) > limit


async def patch(runtime: Runtime, caller: ApiKey, key_id: str, body: KeyPatch) -> KeyOut:
    key = await find(runtime, caller, key_id)
    if key.revoked_at is not None:
        raise validation_error("key_id", f"the key '{key_id}' is revoked and cannot be changed; create a new one")
    changes: dict[str, Any] = {field: getattr(body, field) for field in body.model_fields_set}
    if "name" in changes and changes["name"] is None:
        raise validation_error("name", "a key keeps a name; send a new one or leave the field out")
    if key.id == caller.id and not is_admin(caller) and changes.keys() & {"rate_limit", "budget", "models"}:
        raise ApiError(ErrorCode.AUTHZ_PERMISSION_DENIED, "An API key cannot change its own limits; ask the key "
                                                          "that made it, or an admin:access key.")
    if "models" in changes:
        changes["models"] = _check_grant(caller, [], changes["models"])
    if "budget" in changes:
        changes["budget"] = to_budget(changes["budget"])
    if "expires_at" in changes:
        _check_expiry(changes["expires_at"])
        if key.id == caller.id and not _shortens(key.expires_at, changes["expires_at"]):
            raise ApiError(ErrorCode.AUTHZ_PERMISSION_DENIED, "expires_at: an API key cannot extend its own expiry; "
                                                              "it may only bring it forward.")
    if changes.keys() & {"expires_at", "rate_limit"}:
        parent = await asyncio.to_thread(_store(runtime).get, key.created_by) if key.created_by else None
        expires_at, rate_limit = _within_parent(parent, changes.get("expires_at", key.expires_at),
                                                changes.get("rate_limit", key.rate_limit))
        changes.update({name: value for name, value in (("expires_at", expires_at), ("rate_limit", rate_limit))
                        if name in changes})
    updated = await asyncio.to_thread(_store(runtime).update, key_id, **changes)
    assert updated is not None
    return await asyncio.to_thread(key_out, updated, _budgets(runtime))


def _shortens(current: datetime | None, new: datetime | None) -> bool:
    return new is not None and (current is None or new <= current)


async def revoke(runtime: Runtime, caller: ApiKey, key_id: str) -> KeyOut:
    key = await find(runtime, caller, key_id)
    if key.revoked_at is None:  # works on a full disk too: the DB's reserve makes room for it
        await asyncio.to_thread(runtime.disk_reserve.with_room, lambda: _store(runtime).revoke(key_id))
    return await show(runtime, caller, key_id)
