"""The tables of the state DB (the schema itself is made by the migrations in db/migrations/)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from appliance.db.database import Base

# Made by revision 0004: every install has this tenant (the keys of a single-tenant box live in it) and this user,
# the box's first admin, who owns every key made before tenancy and the keys the CLI makes without --user.
DEFAULT_TENANT_ID = "ten_default"
FIRST_ADMIN_ID = "usr_admin"


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)  # SHA-256 hex; the key is never stored
    prefix: Mapped[str] = mapped_column(String(16))  # first characters, so a person can tell keys apart
    permissions: Mapped[list[str]] = mapped_column(JSON)
    models: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)  # None: every model
    rate_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)  # requests per minute; None: no limit
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Since revision 0002: the last change (the gateway's key cache watches it), the key that created this one over
    # HTTP (None: the CLI), and its budget.
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    budget_period: Mapped[str | None] = mapped_column(String(8), nullable=True)  # day | week | month | total
    budget_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    budget_images: Mapped[int | None] = mapped_column(Integer, nullable=True)
    budget_audio_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Since revision 0004: the key's tenant and the user it is assigned to, and a budget in cost.
    tenant_id: Mapped[str] = mapped_column(String(32), index=True, default=DEFAULT_TENANT_ID,
                                           server_default=DEFAULT_TENANT_ID)
    assigned_user_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    budget_cost: Mapped[float | None] = mapped_column(Float, nullable=True)


class LimitColumns:
    """A tenant's or a user's limits: the same rate limit and budget a key has."""

    rate_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    budget_period: Mapped[str | None] = mapped_column(String(8), nullable=True)
    budget_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    budget_images: Mapped[int | None] = mapped_column(Integer, nullable=True)
    budget_audio_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    budget_cost: Mapped[float | None] = mapped_column(Float, nullable=True)


class TenantRow(LimitColumns, Base):
    """A tenant: a department, project or customer team sharing the box, with its own users, models and limits."""

    __tablename__ = "tenants"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)  # the listing's order
    id: Mapped[str] = mapped_column(String(32), unique=True)  # ten_…
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(12))  # active | suspended | deleted
    models: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)  # the models it may use; None: every one
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Since revision 0006: its claim on a full model (serving/admission.py).
    share_weight: Mapped[float] = mapped_column(Float, default=1.0, server_default="1")
    min_concurrency: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class UserRow(LimitColumns, Base):
    """A person (or a team's service identity) in one tenant, with roles; their keys act for them."""

    __tablename__ = "users"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(32), unique=True)  # usr_…
    tenant_id: Mapped[str] = mapped_column(String(32), index=True)
    email: Mapped[str] = mapped_column(String(320), index=True)  # unique among the tenant's users that are not deleted
    display_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    roles: Mapped[list[str]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(12))  # active | suspended | deleted
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class UsageRow(Base):
    """One inference request: who, what, how it ended, and its units."""

    __tablename__ = "usage"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)  # the listing's order and cursor
    id: Mapped[str] = mapped_column(String(40), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    request_id: Mapped[str] = mapped_column(String(140))
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    model: Mapped[str | None] = mapped_column(String(128), nullable=True)
    backend_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    route: Mapped[str] = mapped_column(String(100))
    status_code: Mapped[int] = mapped_column(Integer)
    error_code: Mapped[str | None] = mapped_column(String(40), nullable=True)
    latency_ms: Mapped[float] = mapped_column(Float)
    tokens_in: Mapped[int] = mapped_column(Integer, default=0)
    tokens_out: Mapped[int] = mapped_column(Integer, default=0)
    images: Mapped[int] = mapped_column(Integer, default=0)
    image_size: Mapped[str | None] = mapped_column(String(20), nullable=True)
    audio_seconds_in: Mapped[float] = mapped_column(Float, default=0.0)
    audio_seconds_out: Mapped[float] = mapped_column(Float, default=0.0)
    characters: Mapped[int] = mapped_column(Integer, default=0)
    # Since revision 0004: whose request it was beyond the key, and what it cost at the model's prices.
    user_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    tenant_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    cost: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    # Since revision 0006: how long it waited for a slot of a full model (None: it had room at once).
    queue_wait_ms: Mapped[float | None] = mapped_column(Float, nullable=True)


class BudgetSpendRow(Base):
    """What one scope (a key, a user or a tenant) spent and holds reserved of one unit in one budget period."""

    __tablename__ = "budget_spend"

    scope_id: Mapped[str] = mapped_column(String(32), primary_key=True)  # key_…, usr_… or ten_…
    unit: Mapped[str] = mapped_column(String(16), primary_key=True)  # tokens | images | audio_seconds | cost
    period_start: Mapped[str] = mapped_column(String(20), primary_key=True)  # "2026-12-01", or "total"
    spent: Mapped[float] = mapped_column(Float, default=0.0)
    reserved: Mapped[float] = mapped_column(Float, default=0.0)


class ReservationRow(Base):
    """One scope's part of a request's reservation; one left behind by a killed gateway is released once it expires."""

    __tablename__ = "budget_reservations"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    hold_id: Mapped[str] = mapped_column(String(40), index=True)  # the request's: every part is settled together
    scope_id: Mapped[str] = mapped_column(String(32))
    unit: Mapped[str] = mapped_column(String(16))
    period_start: Mapped[str] = mapped_column(String(20))
    amount: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class AuditRow(Base):
    """One audited request: who did what to which resource, from where, and whether it succeeded.

    Rows are chained: ``hash`` covers the row's fields and the previous row's
    ``hash`` (``prev_hash``), so an edited, deleted or reordered row breaks the
    chain (``appliance audit verify``). The application only ever inserts
    (triggers refuse UPDATE and DELETE).
    """

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)  # the chain's order
    id: Mapped[str] = mapped_column(String(40), unique=True)  # audit_…
    timestamp: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    action: Mapped[str] = mapped_column(String(60), index=True)  # api_key.create, user.role_update, …
    actor_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    actor_email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    actor_type: Mapped[str] = mapped_column(String(12))  # user | service | anonymous
    actor_key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    tenant_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    resource_type: Mapped[str | None] = mapped_column(String(40), nullable=True)
    resource_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    ip_address: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(512), nullable=True)
    status: Mapped[str] = mapped_column(String(8))  # SUCCESS | FAILURE
    request_id: Mapped[str | None] = mapped_column(String(140), nullable=True)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHeadRow(Base):
    """The chain's head (one row): the last event's sequence number and hash; appending locks it."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))
