"""/v1/tenants, /v1/users and /v1/me: the box's tenants, their users and roles, and each one's limits."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from appliance.protocol.keys import BudgetIn, BudgetOut, KeyOut, ModelsField, Positive

Role = Literal["tenant_viewer", "tenant_user", "tenant_admin", "box_admin"]
Status = Literal["active", "suspended"]
Email = Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, min_length=3, max_length=320,
                                         pattern=r"^[^@\s]+@[^@\s]+$")]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class Limits(BaseModel):
    """A tenant's or a user's rate limit and budget: the same shape a key's have."""

    rate_limit: Positive | None = Field(None, description="requests per minute")
    budget: BudgetIn | None = None


class Share(BaseModel):
    """A tenant's claim on a full model: its weight among the tenants waiting (default 1: equal shares), and the
    calls of it a full model runs before others beyond their own minimum (capped at each model's capacity)."""

    model_config = ConfigDict(extra="forbid")

    weight: float = Field(1.0, gt=0, le=1000)
    min_concurrency: int = Field(0, ge=0, le=100_000)


class TenantCreate(Limits, ModelsField):
    model_config = ConfigDict(extra="forbid")

    name: Name
    share: Share | None = Field(None, description="default an equal share, no minimum")


class TenantPatch(Limits, ModelsField):
    """Only the fields sent change; ``null`` clears a budget, a rate limit or the model allow-list."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    status: Status | None = None
    share: Share | None = None


class TenantOut(BaseModel):
    id: str
    name: str
    status: str
    models: list[str] | None
    rate_limit: int | None
    budget: BudgetOut | None
    share: Share
    created_at: datetime
    updated_at: datetime
    warnings: list[str] = Field(default_factory=list, description="what the change means, e.g. a budget already spent")


class TenantList(BaseModel):
    items: list[TenantOut]
    next_cursor: str | None
    has_more: bool


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Email
    display_name: Name | None = None
    tenant_id: str | None = Field(None, max_length=32, description="default the caller's tenant")
    roles: list[Role] = Field(default_factory=lambda: ["tenant_user"])

    @field_validator("roles")
    @classmethod
    def _some_role(cls, roles: list[str]) -> list[str]:
        if not roles:
            raise ValueError("a user needs at least one role")
        return list(dict.fromkeys(roles))


class UserPatch(Limits):
    model_config = ConfigDict(extra="forbid")

    display_name: Name | None = None
    status: Status | None = None


class RolesPut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    roles: list[Role]
    custom_role_ids: list[str] = Field(default_factory=list, description="the box has no custom roles: leave empty")

    @field_validator("roles")
    @classmethod
    def _some_role(cls, roles: list[str]) -> list[str]:
        if not roles:
            raise ValueError("a user needs at least one role; DELETE /v1/users/{id} removes a user")
        return list(dict.fromkeys(roles))

    @field_validator("custom_role_ids")
    @classmethod
    def _no_custom_roles(cls, ids: list[str]) -> list[str]:
        if ids:
            raise ValueError("the appliance has no custom roles; use the built-in roles")
        return ids


class UserOut(BaseModel):
    id: str
    tenant_id: str
    email: str
    display_name: str | None
    roles: list[str]
    status: str
    rate_limit: int | None
    budget: BudgetOut | None
    created_at: datetime
    updated_at: datetime
    warnings: list[str] = Field(default_factory=list)


class UserList(BaseModel):
    items: list[UserOut]
    next_cursor: str | None
    has_more: bool


class UserListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(100, ge=1, le=1000)
    cursor: str | None = None
    status: Status | None = None
    tenant_id: str | None = Field(None, max_length=32, description="a box admin's filter; others see their tenant's")


class TenantListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(100, ge=1, le=1000)
    cursor: str | None = None
    status: Status | None = None


class MeTenant(BaseModel):
    id: str
    name: str


class Me(BaseModel):
    """The caller: its key, the user it acts for, their tenant, and what the key may do."""

    key: KeyOut
    user: UserOut | None
    tenant: MeTenant
    role: str | None
    permissions: list[str] = Field(description="what this key may do: its own permissions within its user's roles")
    keys: list[KeyOut] = Field(description="every key assigned to the user (none shows its secret)")
