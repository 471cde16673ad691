"""GET /health and /ready: the gateway's liveness and whether every startup model is loaded (not enveloped)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready", "starting"]
    startup_models: dict[str, str]  # slug → its worker's state
