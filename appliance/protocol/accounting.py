"""/v1/accounting/usage and /v1/accounting/usage/summary."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, field_validator

GroupBy = Literal["model", "key", "backend", "user", "tenant"]
SummaryPeriod = Literal["hour", "day", "week", "month", "total"]
MAX_CURSOR = 2**63 - 1  # a usage row's sequence number is a 64-bit integer


def _in_utc_range(moment: datetime) -> datetime:
    """A time that exists in UTC too (0001-01-01T00:00+14:00 does not): the DB is queried in UTC."""
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time is outside the range of dates (years 1 to 9999 in UTC)") from None


Moment = Annotated[AwareDatetime, AfterValidator(_in_utc_range)]


class UsageQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: Moment | None = None
    end: Moment | None = None
    model: str | None = None
    backend_id: str | None = None
    period: SummaryPeriod | None = Field(None, description="from the start of the current hour, day, …; "
                                                           "ignored when start is given")
    key_id: str | None = Field(None, description="a key the caller may see the usage of")
    user_id: str | None = Field(None, description="accounting:view_own (the caller's user) or view_tenant")
    tenant_id: str | None = Field(None, description="accounting:view_tenant (the caller's) or view_partner (any)")
    limit: int = Field(100, ge=1, le=1000)
    cursor: int | None = Field(None, ge=1, le=MAX_CURSOR)


class SummaryQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    period: SummaryPeriod = "day"
    group_by: GroupBy = "model"
    start: Moment | None = Field(None, description="default: the start of the current period")
    end: Moment | None = None
    model: str | None = None
    backend_id: str | None = None
    key_id: str | None = None
    user_id: str | None = None
    tenant_id: str | None = None


class ExportQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: AwareDatetime | None = Field(None, description="default 30 days before end")
    end: AwareDatetime | None = Field(None, description="default now")
    format: Literal["csv", "json", "ndjson"] = "csv"
    model: str | None = None
    backend_id: str | None = None
    key_id: str | None = None
    user_id: str | None = None
    tenant_id: str | None = None


def utc(moment: datetime | None) -> datetime | None:
    """Aware and in UTC: rows are stored in UTC (SQLite keeps no zone), queries may come in any zone."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class UsageItem(BaseModel):
    id: str
    created_at: datetime
    request_id: str
    key_id: str | None
    model: str | None
    backend_id: str | None
    route: str
    status_code: int
    error_code: str | None
    latency_ms: float
    tokens_in: int
    tokens_out: int
    images: int
    image_size: str | None
    audio_seconds_in: float
    audio_seconds_out: float
    characters: int
    user_id: str | None = None
    tenant_id: str | None = None
    cost: float = 0.0
    queue_wait_ms: float | None = Field(None, description="how long it waited for a slot of a full model; null: "
                                                          "it had room at once")

    @field_validator("created_at")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime | None:
        return utc(value)


class UsagePage(BaseModel):
    items: list[UsageItem]
    next_cursor: str | None
    has_more: bool


class SummaryRow(BaseModel):
    group_key: str | None
    request_count: int
    input_tokens: int
    output_tokens: int
    total_tokens: int
    images: int
    audio_seconds_in: float
    audio_seconds_out: float
    audio_seconds: float
    characters: int
    total_cost: float


class UsageSummary(BaseModel):
    period: SummaryPeriod
    group_by: GroupBy
    start: datetime | None
    end: datetime | None
    rows: list[SummaryRow]
