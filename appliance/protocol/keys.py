"""/v1/api-keys: create, list, show, change and revoke keys over HTTP."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictFloat, StrictInt, field_validator, \
    model_validator

from appliance.permissions import Permission

Period = Literal["day", "week", "month", "total"]
MAX_AMOUNT = 2**53  # JSON's safe integers; the state DB's columns hold 64 bits
Positive = Annotated[StrictInt, Field(gt=0, le=MAX_AMOUNT)]


class BudgetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an unknown unit is a mistake the client must hear of

    period: Period
    tokens: Positive | None = None
    images: Positive | None = None
    audio_seconds: Annotated[StrictFloat | StrictInt, Field(gt=0, le=MAX_AMOUNT)] | None = None
    cost: Annotated[StrictFloat | StrictInt, Field(gt=0, le=MAX_AMOUNT)] | None = Field(
        None, description="in the currency of the catalogue's per-model prices")

    @model_validator(mode="after")
    def _limits_something(self) -> BudgetIn:
        if self.tokens is None and self.images is None and self.audio_seconds is None and self.cost is None:
            raise ValueError("a budget needs a limit in tokens, images, audio_seconds or cost")
        return self


class ModelsField(BaseModel):
    models: list[Annotated[str, Field(min_length=1, max_length=128)]] | None = None

    @field_validator("models")
    @classmethod
    def _not_empty(cls, models: list[str] | None) -> list[str] | None:
        if models is not None and not models:
            raise ValueError("an empty list would allow no model; leave the field out (or null) for every model")
        return models


class KeyCreate(ModelsField):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    permissions: list[Permission] | None = Field(None, description="default models:list and models:use")
    rate_limit: Positive | None = Field(None, description="requests per minute")
    budget: BudgetIn | None = None
    expires_at: AwareDatetime | None = Field(None, description="ISO 8601 with a time zone; default never")
    assigned_user_id: str | None = Field(None, max_length=32, description="the user the key acts for (within their "
                                                                          "roles); default the caller's user")


class KeyPatch(ModelsField):
    """Only the fields sent change; ``null`` clears a budget, a rate limit or a model list."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    rate_limit: Positive | None = None
    budget: BudgetIn | None = None
    expires_at: AwareDatetime | None = None


class Spent(BaseModel):
    unit: str
    limit: float
    spent: float
    reserved: float
    remaining: float


class BudgetOut(BaseModel):
    period: Period
    tokens: int | None
    images: int | None
    audio_seconds: float | None
    cost: float | None = None
    period_resets_at: datetime | None
    spend: list[Spent]


class KeyOut(BaseModel):
    id: str
    name: str
    prefix: str
    permissions: list[str]
    models: list[str] | None
    rate_limit: int | None
    budget: BudgetOut | None
    created_at: datetime
    created_by: str | None
    expires_at: datetime | None
    revoked_at: datetime | None
    status: Literal["active", "revoked", "expired"]
    tenant_id: str | None = None
    assigned_user_id: str | None = None
    warnings: list[str] = Field(default_factory=list, description="what the change means, e.g. a budget already spent")


class KeyCreated(KeyOut):
    key: str = Field(description="the secret: shown in this answer only")


class KeyList(BaseModel):
    items: list[KeyOut]
    next_cursor: str | None
    has_more: bool
