"""Who a request is: its key, the user the key acts for, their tenant, and what together they may do.

The gateway resolves a ``Caller`` for every request; the directory keeps the
answer until the key, user or tenant tables change (the key store's change
watch), so the hot path costs no query on SQLite.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.db.keys import ApiKey, Budget, KeyStore
from appliance.db.tables import TenantRow, UserRow
from appliance.tenancy.roles import BOX_ADMIN, effective, highest
from appliance.tenancy.store import Tenant, TenantStore, User, UserStore, to_tenant, to_user

Reach = Literal["box", "tenant"]
ScopeKind = Literal["key", "parent", "user", "tenant"]


@dataclass(frozen=True)
class Scope:
    """One level a request belongs to, with its limits: every request must fit each of its scopes."""

    kind: ScopeKind
    id: str
    budget: Budget | None
    rate_limit: int | None


@dataclass(frozen=True)
class Caller:
    key: ApiKey
    user: User | None  # None: a key assigned to no user (a service key of its tenant)
    tenant: Tenant
    permissions: frozenset[str]  # what the key may do: its own permissions within its user's roles
    parents: tuple[ApiKey, ...] = ()  # the key that made this one over HTTP, the key that made that one, …

    @property
    def tenant_id(self) -> str:
        return self.tenant.id

    @property
    def user_id(self) -> str | None:
        return self.user.id if self.user else None

    @property
    def roles(self) -> tuple[str, ...]:
        return self.user.roles if self.user else ()

    @property
    def role(self) -> str | None:
        return highest(self.roles)

    @property
    def is_box_admin(self) -> bool:
        return BOX_ADMIN in self.roles

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    def reach(self, permission: str) -> Reach | None:
        """How far a permission reaches for this caller: the whole box (a box admin), its tenant, or nowhere."""
        if not self.can(permission):
            return None
        return "box" if self.is_box_admin else "tenant"

    def sees_tenant(self, tenant_id: str | None, permission: str) -> bool:
        """Whether ``permission`` reaches the tenant ``tenant_id``."""
        reach = self.reach(permission)
        return reach == "box" or (reach == "tenant" and tenant_id == self.tenant.id)

    def scopes(self) -> list[Scope]:
        """The key, the keys above it, its user and its tenant, narrowest first: a request fits each one's budget
        and rate limit (a key never outspends or out-rates the key that made it)."""
        out = [Scope("key", self.key.id, self.key.budget, self.key.rate_limit)]
        out += [Scope("parent", parent.id, parent.budget, parent.rate_limit) for parent in self.parents]
        if self.user is not None:
            out.append(Scope("user", self.user.id, self.user.budget, self.user.rate_limit))
        out.append(Scope("tenant", self.tenant.id, self.tenant.budget, self.tenant.rate_limit))
        return out

    # The audit log's view of the caller.
    @property
    def actor_id(self) -> str:
        return self.user.id if self.user else self.key.id

    @property
    def actor_email(self) -> str | None:
        return self.user.email if self.user else None

    @property
    def actor_type(self) -> str:
        return "user" if self.user else "service"


class Inactive(Exception):
    """A key that is valid itself, but whose user or tenant is suspended or deleted; the message says which."""


class Directory:
    """Tenants, users and the callers of keys, on the key store's DB."""

    def __init__(self, keys: KeyStore) -> None:
        self.keys = keys
        self.tenants = TenantStore(keys.engine)
        self.users = UserStore(keys.engine)
        self._callers: dict[str, Caller | Inactive] = {}  # key id → its caller, while the DB is unchanged
        self._generation = -1
        self._lock = threading.Lock()

    def verify(self, token: str) -> Caller | None:
        """The caller whose key is ``token``; None for an unknown, revoked or expired key; Inactive raised for a
        key whose user or tenant is suspended or deleted."""
        key = self.keys.verify(token)
        if key is None:
            return None
        generation = self.keys.generation
        with self._lock:
            if generation != self._generation:
                self._callers.clear()
                self._generation = generation
            found = self._callers.get(key.id)
        if found is None or found.key != key:
            try:
                found = self.caller_of(key)
            except Inactive as exc:
                found = exc
            with self._lock:
                if self._generation == generation:
                    self._callers[key.id] = found
        if isinstance(found, Inactive):
            raise found
        return found

    def caller_of(self, key: ApiKey, session: Session | None = None) -> Caller:
        """The caller of ``key`` as the DB has it now (Inactive when its user or tenant is not active)."""
        def read(tx: Session) -> tuple[TenantRow | None, UserRow | None]:
            tenant = tx.scalar(select(TenantRow).where(TenantRow.id == key.tenant_id))
            user = tx.scalar(select(UserRow).where(UserRow.id == key.user_id)) if key.user_id else None
            return tenant, user

        if session is not None:
            tenant_row, user_row = read(session)
            tenant, user = (to_tenant(tenant_row) if tenant_row else None), (to_user(user_row) if user_row else None)
        else:
            with Session(self.keys.engine) as tx:
                tenant_row, user_row = read(tx)
                tenant = to_tenant(tenant_row) if tenant_row else None
                user = to_user(user_row) if user_row else None
        if tenant is None or tenant.status == "deleted":
            raise Inactive("The API key's tenant was deleted.")
        if tenant.status != "active":
            raise Inactive(f"The API key's tenant is {tenant.status}; ask the box's admin.")
        if key.user_id is not None:
            if user is None or user.status == "deleted":
                raise Inactive("The API key's user was deleted.")
            if user.status != "active":
                raise Inactive(f"The API key's user is {user.status}; ask your tenant's admin.")
        roles = user.roles if user else ("tenant_user",)  # a service key: no more than a tenant's user
        return Caller(key, user, tenant, effective(key.permissions, roles), tuple(self.keys.lineage(key)))
