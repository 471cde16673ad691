"""GET /v1/models and /v1/models/{slug}."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class BackendInfo(BaseModel):
    id: str  # as X-Scaigrid-Backend shows it
    health_status: str  # healthy | loading | restarting | idle | unhealthy
    in_flight: int


class ModelInfo(BaseModel):
    slug: str
    display_name: str
    modality: str  # chat | embedding | image | audio | rerank
    aliases: list[str]
    engine: str
    capabilities: list[str] = Field(description="what a chat model takes beyond text: vision (image parts), "
                                    "audio_input (audio parts), tools")
    context_window: int | None
    max_output_tokens: int | None
    status: str  # active: in the catalogue and servable by this appliance; unsupported: its engine is not
    health_status: str  # healthy | loading | restarting | idle | unhealthy
    active_backend_count: int
    total_backend_count: int
    backends: list[BackendInfo]


class ModelList(BaseModel):
    items: list[ModelInfo]
    next_cursor: str | None
    has_more: bool


class OpenAIModel(BaseModel):
    """One model of ``/oai/v1/models``, in OpenAI's shape."""

    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "appliance"
    capabilities: list[str] = Field(default_factory=list, description="as in /v1/models: vision, audio_input, tools")


class OpenAIModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIModel]
