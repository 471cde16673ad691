"""The sampling fields chat and generate share (OpenAI's, plus the vLLM extras its users pass)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field

INT64 = 2**63 - 1
StopText = Annotated[str, Field(min_length=1)]


class SamplingFields(BaseModel):
    model: str = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: StopText | Annotated[list[StopText], Field(max_length=16)] | None = None
    seed: int | None = Field(None, ge=-INT64 - 1, le=INT64)
    stream: bool = False
    n: int = Field(1, ge=1, le=16)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    metadata: dict[str, Any] | None = Field(None, description="kept in the appliance's log; not sent to the engine")
    # vLLM's own sampling extras (OpenAI SDK: extra_body)
    top_k: int | None = Field(None, ge=-1)
    min_p: float | None = Field(None, ge=0, le=1)
    repetition_penalty: float | None = Field(None, gt=0, le=2)
    min_tokens: int | None = Field(None, ge=0)
    ignore_eos: bool | None = None
