"""Batches and files: the requests both surfaces take and the objects they answer with (OpenAI's shapes)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Window = Literal["24h", "4h", "1h"]
BatchStatus = Literal["validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling",
                      "cancelled"]
OpenAIEndpoint = Literal["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/images/generations",
                         "/v1/responses", "/v1/rerank"]
MAX_METADATA = 16


class _WithMetadata(BaseModel):
    metadata: dict[str, str] | None = None

    @field_validator("metadata")
    @classmethod
    def _small(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return None
        if len(value) > MAX_METADATA:
            raise ValueError(f"at most {MAX_METADATA} pairs")
        if any(len(k) > 64 or len(v) > 512 for k, v in value.items()):
            raise ValueError("keys may have 64 characters, values 512")
        return value


class ScaigridBatchCreate(_WithMetadata):
    """POST /v1/inference/batch: the input by URL (an uploaded file, an allowed host) or inline."""

    model_config = ConfigDict(extra="forbid")

    input_file_url: str | None = None
    input_file_base64: str | None = None
    endpoint_completion_window: Window = "24h"

    @model_validator(mode="after")
    def _one_input(self) -> ScaigridBatchCreate:
        if (self.input_file_url is None) == (self.input_file_base64 is None):
            raise ValueError("give exactly one of input_file_url and input_file_base64")
        return self


class OpenAIBatchCreate(_WithMetadata):
    """POST /oai/v1/batches."""

    input_file_id: str
    endpoint: OpenAIEndpoint
    completion_window: Window = "24h"


class BatchListQuery(BaseModel):
    status: BatchStatus | None = None
    limit: int = Field(20, ge=1, le=100)
    cursor: str | None = Field(None, description="the id of the last batch of the previous page")


class RequestCounts(BaseModel):
    total: int
    completed: int
    failed: int


class BatchError(BaseModel):
    code: str
    line: int | None
    message: str
    param: str | None = None


class BatchErrors(BaseModel):
    object: Literal["list"] = "list"
    data: list[BatchError]


class BatchObject(BaseModel):
    id: str
    object: Literal["batch"] = "batch"
    endpoint: str | None
    errors: BatchErrors | None
    input_file_id: str
    completion_window: str
    status: BatchStatus
    output_file_id: str | None
    error_file_id: str | None
    output_file_url: str | None = None
    error_file_url: str | None = None
    created_at: int
    in_progress_at: int | None
    expires_at: int
    finalizing_at: int | None
    completed_at: int | None
    failed_at: int | None
    expired_at: int | None
    cancelling_at: int | None
    cancelled_at: int | None
    request_counts: RequestCounts
    metadata: dict[str, str] | None


class BatchPage(BaseModel):
    """The ScaiGrid list: ``data.items`` and the cursor of the next page."""

    items: list[BatchObject]
    cursor: str | None


class OpenAIList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Any]
    first_id: str | None = None  # left out of an empty page of batches; files always name them ("" when empty)
    last_id: str | None = None
    has_more: bool


class FileUploadForm(BaseModel):
    """The form fields of POST /oai/v1/files besides ``file`` (multipart/form-data)."""

    purpose: str = Field(description="'batch' (a batch's input), or 'vision' (an image) and 'user_data' (an image or "
                         "a sound) for chat content parts")


class FileObject(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: Literal["processed"] = "processed"


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool = True


class OpenAIListQuery(BaseModel):
    after: str | None = None
    limit: int = Field(20, ge=1, le=10000)
    purpose: str | None = None
