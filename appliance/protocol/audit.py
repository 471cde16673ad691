"""/v1/audit-log and /v1/audit-log/export: the audit events a caller may read."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from appliance.protocol.accounting import utc

AUDIT_COLUMNS = ["id", "timestamp", "action", "actor_id", "actor_email", "actor_type", "actor_key_id", "tenant_id",
                 "resource_type", "resource_id", "ip_address", "user_agent", "status", "request_id", "hash"]


class AuditQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: AwareDatetime | None = None
    end: AwareDatetime | None = None
    action: str | None = Field(None, max_length=60)
    actor_id: str | None = Field(None, max_length=64)
    resource_type: str | None = Field(None, max_length=40)
    resource_id: str | None = Field(None, max_length=200)
    status: Literal["SUCCESS", "FAILURE"] | None = None
    ip_address: str | None = Field(None, max_length=64)
    tenant_id: str | None = Field(None, max_length=32, description="a box admin's filter; others see their tenant's")
    limit: int = Field(100, ge=1, le=1000)
    cursor: int | None = Field(None, ge=1)


class AuditExportQuery(AuditQuery):
    format: Literal["csv", "json", "ndjson"] = "ndjson"


class AuditItem(BaseModel):
    id: str
    timestamp: datetime
    action: str
    actor_id: str | None
    actor_email: str | None
    actor_type: str
    actor_key_id: str | None
    tenant_id: str | None
    resource_type: str | None
    resource_id: str | None
    ip_address: str | None
    user_agent: str | None
    status: Literal["SUCCESS", "FAILURE"]
    request_id: str | None
    details: dict[str, Any] | None
    hash: str = Field(description="SHA-256 over the event and the hash of the event before it")

    @field_validator("timestamp")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime | None:
        return utc(value)


class AuditPage(BaseModel):
    items: list[AuditItem]
    next_cursor: str | None
    has_more: bool
