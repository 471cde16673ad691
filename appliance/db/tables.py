"""The tables of the state DB (the schema itself is made by the migrations in db/migrations/)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from appliance.db.database import Base


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


class BudgetSpendRow(Base):
    """What a key spent and holds reserved of one unit in one budget period."""

    __tablename__ = "budget_spend"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    unit: Mapped[str] = mapped_column(String(16), primary_key=True)  # tokens | images | audio_seconds
    period_start: Mapped[str] = mapped_column(String(20), primary_key=True)  # "2026-12-01", or "total"
    spent: Mapped[float] = mapped_column(Float, default=0.0)
    reserved: Mapped[float] = mapped_column(Float, default=0.0)


class ReservationRow(Base):
    """A reservation in flight; one left behind by a killed gateway is released once it expires."""

    __tablename__ = "budget_reservations"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32))
    unit: Mapped[str] = mapped_column(String(16))
    period_start: Mapped[str] = mapped_column(String(20))
    amount: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
