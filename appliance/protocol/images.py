"""POST /v1/inference/images/generate and /oai/v1/images/generations (OpenAI's images shape)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator
from pydantic_core import PydanticCustomError

MAX_PROMPT_CHARS = 4000  # DALL-E 3's limit; SDXL's text encoders read only the first 77 tokens anyway
MAX_IMAGES = 10
SIZE_PATTERN = r"^[1-9][0-9]{1,4}x[1-9][0-9]{1,4}$"
# The seed page's sizes for DALL-E 3 and SDXL, used when a model's catalogue entry names none.
DEFAULT_SIZES = ("1024x1024", "1792x1024", "1024x1792")


class ImageGenerationRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    prompt: str = Field(max_length=MAX_PROMPT_CHARS)
    n: StrictInt = Field(1, ge=1, le=MAX_IMAGES)
    size: str | None = Field(None, pattern=SIZE_PATTERN, description="WIDTHxHEIGHT, one the model allows")
    quality: Literal["standard", "hd"] = "standard"
    style: Literal["vivid", "natural"] = "vivid"
    response_format: Literal["url", "b64_json"] = "url"
    metadata: dict[str, Any] | None = None
    user: str | None = None

    @field_validator("prompt")
    @classmethod
    def _prompt_says_something(cls, prompt: str) -> str:
        if not prompt.strip():
            raise PydanticCustomError("empty_prompt", "the prompt is empty; describe the image to generate")
        return prompt

    @property
    def width_height(self) -> tuple[int, int]:
        width, _, height = (self.size or DEFAULT_SIZES[0]).partition("x")
        return int(width), int(height)


class ImageData(BaseModel):
    url: str | None = None
    b64_json: str | None = None
    revised_prompt: str | None = None  # the prompt actually used: the appliance does not rewrite prompts


class ImageGenerationResponse(BaseModel):
    created: int
    data: list[ImageData]


class ImageFile(BaseModel):
    """A PNG a local worker wrote whole into the media directory: the gateway registers it without reading it."""

    file: str  # a hand-over name (appliance/media/files.py), inside the media directory
    size: int
    content_type: str = "image/png"
    revised_prompt: str | None = None


class WorkerImagesResponse(BaseModel):
    """A worker's answer (internal, worker → gateway): OpenAI's base64 ``data``, or ``files`` in the media dir."""

    created: int
    data: list[ImageData] = []
    files: list[ImageFile] = []


def allowed_sizes(engine_options: dict[str, Any]) -> tuple[str, ...]:
    """The sizes a model's catalogue entry allows (``engine_options.sizes``), the seed's three by default."""
    sizes = engine_options.get("sizes")
    return tuple(str(size) for size in sizes) if sizes else DEFAULT_SIZES
