"""Tenants and users in the state DB: what each is, its model allow-list, rate limit and budget.

Nothing is ever removed: a deleted tenant or user keeps its row (its usage
and audit events still name it) with status ``deleted``, and is then found by
no lookup but the audit's. Every change can join the caller's transaction
(``session``), so the change and its audit event commit together.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from appliance.db.database import transaction
from appliance.db.keys import Budget, budget_columns, budget_of
from appliance.db.paging import oldest_first
from appliance.db.tables import TenantRow, UserRow

T = TypeVar("T")

STATUSES = ("active", "suspended")  # what a tenant's or user's status may be set to; "deleted" is a delete's


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    status: str
    models: tuple[str, ...] | None  # None: every model of the catalogue
    rate_limit: int | None
    budget: Budget | None
    created_at: datetime
    updated_at: datetime
    share_weight: float = 1.0  # its claim on a full model, among the tenants waiting (serving/admission.py)
    min_concurrency: int = 0  # calls of it a full model runs before any other tenant's beyond their own minimum


@dataclass(frozen=True)
class User:
    id: str
    tenant_id: str
    email: str
    display_name: str | None
    roles: tuple[str, ...]
    status: str
    rate_limit: int | None
    budget: Budget | None
    created_at: datetime
    updated_at: datetime


def to_tenant(row: TenantRow) -> Tenant:
    return Tenant(id=row.id, name=row.name, status=row.status,
                  models=tuple(row.models) if row.models is not None else None, rate_limit=row.rate_limit,
                  budget=budget_of(row), created_at=_aware(row.created_at), updated_at=_aware(row.updated_at),
                  share_weight=row.share_weight if row.share_weight is not None else 1.0,
                  min_concurrency=row.min_concurrency or 0)


def to_user(row: UserRow) -> User:
    return User(id=row.id, tenant_id=row.tenant_id, email=row.email, display_name=row.display_name,
                roles=tuple(row.roles), status=row.status, rate_limit=row.rate_limit, budget=budget_of(row),
                created_at=_aware(row.created_at), updated_at=_aware(row.updated_at))


def _limit_values(changes: dict[str, Any]) -> dict[str, Any]:
    """Column values for ``changes`` (``budget`` spread over its columns, ``models`` as a list or None)."""
    values = dict(changes)
    if "budget" in values:
        values.update(budget_columns(values.pop("budget")))
    if "models" in values:
        values["models"] = list(values["models"]) if values["models"] is not None else None
    if "roles" in values:
        values["roles"] = list(values["roles"])
    return values


def _update(engine: Engine, session: Session | None, table: Any, row_id: str, changes: dict[str, Any],
            convert: Callable[[Any], T]) -> T | None:
    """Set ``changes`` on the live (not deleted) row ``row_id`` of ``table``; None if there is none."""
    with transaction(engine, session) as tx:
        row = tx.scalar(select(table).where(table.id == row_id, table.status != "deleted"))
        if row is None:
            return None
        for column, value in _limit_values(changes).items():
            setattr(row, column, value)
        row.updated_at = datetime.now(UTC)
        tx.flush()
        return convert(row)


class TenantStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, name: str, models: Sequence[str] | None = None, rate_limit: int | None = None,
               budget: Budget | None = None, session: Session | None = None, share_weight: float = 1.0,
               min_concurrency: int = 0) -> Tenant:
        now = datetime.now(UTC)
        row = TenantRow(id="ten_" + secrets.token_hex(8), name=name, status="active",
                        models=list(models) if models is not None else None, rate_limit=rate_limit,
                        created_at=now, updated_at=now, share_weight=share_weight, min_concurrency=min_concurrency,
                        **budget_columns(budget))
        with transaction(self.engine, session) as tx:
            tx.add(row)
            tx.flush()
            return to_tenant(row)

    def get(self, tenant_id: str, session: Session | None = None) -> Tenant | None:
        """The tenant, unless it is deleted."""
        with transaction(self.engine, session) as tx:
            row = tx.scalar(select(TenantRow).where(TenantRow.id == tenant_id, TenantRow.status != "deleted"))
            return to_tenant(row) if row is not None else None

    def named(self, name: str, session: Session | None = None) -> Tenant | None:
        with transaction(self.engine, session) as tx:
            row = tx.scalar(select(TenantRow).where(func.lower(TenantRow.name) == name.lower(),
                                                    TenantRow.status != "deleted"))
            return to_tenant(row) if row is not None else None

    def list(self, status: str | None = None, after: str | None = None, limit: int = 100) -> list[Tenant]:
        """Oldest first, up to ``limit`` after the tenant ``after``; deleted ones are left out."""
        where = [TenantRow.status != "deleted"] + ([TenantRow.status == status] if status is not None else [])
        return [to_tenant(row) for row in oldest_first(self.engine, TenantRow, limit, after, *where)]

    def update(self, tenant_id: str, session: Session | None = None, **changes: Any) -> Tenant | None:
        """Change ``name``, ``status``, ``models``, ``rate_limit``, ``budget``, ``share_weight`` or
        ``min_concurrency``; None if no such tenant."""
        return _update(self.engine, session, TenantRow, tenant_id, changes, to_tenant)

    def delete(self, tenant_id: str, session: Session) -> bool:
        """Mark the tenant and every user of it deleted (their keys are the caller's to revoke, in ``session``)."""
        now = datetime.now(UTC)
        row = session.scalar(select(TenantRow).where(TenantRow.id == tenant_id, TenantRow.status != "deleted"))
        if row is None:
            return False
        row.status, row.deleted_at, row.updated_at = "deleted", now, now
        for user in session.scalars(select(UserRow).where(UserRow.tenant_id == tenant_id,
                                                          UserRow.status != "deleted")):
            user.status, user.deleted_at, user.updated_at = "deleted", now, now
        session.flush()
        return True


class UserStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, tenant_id: str, email: str, display_name: str | None, roles: Sequence[str],
               session: Session | None = None) -> User:
        now = datetime.now(UTC)
        row = UserRow(id="usr_" + secrets.token_hex(8), tenant_id=tenant_id, email=email, display_name=display_name,
                      roles=list(roles), status="active", created_at=now, updated_at=now)
        with transaction(self.engine, session) as tx:
            tx.add(row)
            tx.flush()
            return to_user(row)

    def get(self, user_id: str, session: Session | None = None) -> User | None:
        """The user, unless deleted."""
        with transaction(self.engine, session) as tx:
            row = tx.scalar(select(UserRow).where(UserRow.id == user_id, UserRow.status != "deleted"))
            return to_user(row) if row is not None else None

    def with_email(self, tenant_id: str, email: str, session: Session | None = None) -> User | None:
        with transaction(self.engine, session) as tx:
            row = tx.scalar(select(UserRow).where(UserRow.tenant_id == tenant_id, UserRow.status != "deleted",
                                                  func.lower(UserRow.email) == email.lower()))
            return to_user(row) if row is not None else None

    def list(self, tenant_id: str | None, status: str | None = None, after: str | None = None,
             limit: int = 100) -> list[User]:
        """Oldest first (of one tenant, or every tenant's with None); deleted users are left out."""
        where = [UserRow.status != "deleted"] + ([UserRow.tenant_id == tenant_id] if tenant_id is not None else []) \
            + ([UserRow.status == status] if status is not None else [])
        return [to_user(row) for row in oldest_first(self.engine, UserRow, limit, after, *where)]

    def update(self, user_id: str, session: Session | None = None, **changes: Any) -> User | None:
        """Change ``display_name``, ``status``, ``roles``, ``rate_limit`` or ``budget``; None if no such user."""
        return _update(self.engine, session, UserRow, user_id, changes, to_user)

    def delete(self, user_id: str, session: Session) -> bool:
        """Soft-delete: the row stays (usage and audit name it), no lookup finds it."""
        now = datetime.now(UTC)
        row = session.scalar(select(UserRow).where(UserRow.id == user_id, UserRow.status != "deleted"))
        if row is None:
            return False
        row.status, row.deleted_at, row.updated_at = "deleted", now, now
        session.flush()
        return True
