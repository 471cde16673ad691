"""POST /v1/inference/embed and /oai/v1/embeddings (OpenAI's embeddings shape).

``input`` takes OpenAI's four shapes: a string, an array of strings, an array
of token ids (one input) or an array of token-id arrays. OpenAI's embedding
clients send token ids by default (LangChain's ``OpenAIEmbeddings`` tokenizes
with ``cl100k_base``); the gateway decodes them (serving/token_ids.py), so a
worker only ever gets text (``TextEmbeddingRequest``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, StrictInt, StringConstraints, Tag, \
    field_validator

MAX_INPUTS = 2048  # OpenAI's limit of inputs per request

Text = Annotated[str, StringConstraints(min_length=1)]
TokenIds = Annotated[list[Annotated[StrictInt, Field(ge=0)]], Field(min_length=1)]
Texts = Annotated[list[Text], Field(min_length=1, max_length=MAX_INPUTS)]
TokenArrays = Annotated[list[TokenIds], Field(min_length=1, max_length=MAX_INPUTS)]

# The tags name the branch in a validation error's location, where field_path() skips them.
TEXTS, TOKENS = "list[str]", "list[list[int]]"


def _shape(value: Any) -> str:
    """Which of the two shapes the (normalised) input is: its first item decides, so errors name the others."""
    if isinstance(value, list) and value and isinstance(value[0], list):
        return TOKENS
    return TEXTS


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    # A lone string (or a lone token array) is one input; the answer is a list either way.
    input: Annotated[Annotated[Texts, Tag(TEXTS)] | Annotated[TokenArrays, Tag(TOKENS)], Discriminator(_shape)]
    dimensions: int | None = Field(None, ge=1)
    encoding_format: Literal["float", "base64"] = "float"
    user: str | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list):
            raise ValueError("must be a string, an array of strings, an array of token ids or an array of "
                             "token-id arrays")
        if value and isinstance(value[0], int) and not isinstance(value[0], bool):
            return [value]  # one input, as token ids
        return value

    @property
    def token_arrays(self) -> list[list[int]] | None:
        """The inputs as token ids (to be decoded), or None when they are text."""
        inputs = self.input
        return inputs if inputs and isinstance(inputs[0], list) else None  # type: ignore[return-value]


class TextEmbeddingRequest(EmbeddingRequest):
    """What a worker gets: text only (the gateway decoded any token ids)."""

    input: Texts  # type: ignore[assignment]


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str  # str: base64 of little-endian float32


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage
