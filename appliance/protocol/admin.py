"""GET /v1/admin/status and POST /v1/admin/models/{slug}/load|unload: what the console's status page shows."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

# A model's state as an operator reads it; ``failed``: its last start or run ended in an error and it is
# waiting to start again (``last_error`` says why).
ModelState = Literal["loaded", "starting", "unloaded", "failed", "stopping", "remote"]


class BackendStatus(BaseModel):
    id: str  # as X-Scaigrid-Backend shows it
    state: str  # a local worker's state (stopped, starting, ready, backoff, stopping), or up / down for a remote
    in_flight: int
    restarts: int
    last_error: str | None


class RecentStats(BaseModel):
    """The model's requests over the last ``window_s`` seconds, from the usage records."""

    window_s: int
    requests: int
    errors: int
    mean_latency_ms: float | None
    output_tokens_per_s: float | None = Field(description="output tokens over the time spent producing them")


class TenantLoad(BaseModel):
    """One tenant's live calls on a model: those it runs, and those waiting for a slot while the model is full."""

    tenant_id: str
    running: int
    waiting: int


class ModelStatus(BaseModel):
    slug: str
    display_name: str
    modality: str
    engine: str
    load: Literal["startup", "on-demand"]
    state: ModelState
    local: bool
    backends: list[BackendStatus]
    restarts: int
    last_error: str | None
    gpu_memory_gb: float = Field(description="what the model holds in the GPU-memory ledger while it runs")
    recent: RecentStats
    capacity: int = Field(description="live calls it runs at once before new ones wait in fair order")
    tenants: list[TenantLoad] = Field(default_factory=list, description="the tenants with calls running or waiting "
                                                                        "(in this gateway)")


class LedgerStatus(BaseModel):
    total_gb: float | None = Field(description="the gpu_memory_gb setting; null: no ledger")
    used_gb: float


class AdminStatus(BaseModel):
    version: str
    ready: bool = Field(description="every startup model is loaded, as GET /ready says")
    ledger: LedgerStatus
    models: list[ModelStatus]


class ModelAction(BaseModel):
    """The answer to a load or unload: the model as it is right after (a load goes on in the background)."""

    action: Literal["load", "unload"]
    model: ModelStatus
