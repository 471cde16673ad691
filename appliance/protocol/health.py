"""GET /health and /ready: the gateway's liveness and whether every startup model is loaded (not enveloped)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready", "starting", "unavailable"]  # unavailable: the state DB cannot be used
    startup_models: dict[str, str]  # slug → its worker's state
    database: str | None = None  # what is wrong with the state DB, and how to restore it; None when it is fine
