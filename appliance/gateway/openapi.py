"""The OpenAPI document, made truthful: every route's body, success and errors, from the contract's models.

The routes read their bodies themselves (after authentication, with the
contract's own error paths), so FastAPI cannot see them; each route instead
declares its contract with :func:`documented`, and :func:`install_openapi`
adds the request schemas and the bearer scheme to the document.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Generic, Literal, TypeVar

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from appliance.gateway.errors import OPENAI_STATUS
from appliance.serving.errors import HTTP_STATUS, ErrorCode

T = TypeVar("T")

REF = "#/components/schemas/{model}"
BEARER = "bearer"


class Meta(BaseModel):
    request_id: str


class Envelope(BaseModel, Generic[T]):
    """Every JSON success of ``/v1``: the data inside ``status`` and ``meta``."""

    status: Literal["ok"]
    data: T
    meta: Meta


class ErrorDetail(BaseModel):
    field: str
    message: str


class ErrorInfo(BaseModel):
    code: ErrorCode
    message: str
    details: list[ErrorDetail] | None = None  # validation errors only
    retry_after: int | None = None  # seconds; where a retry can help


class ErrorEnvelope(BaseModel):
    """Every error of ``/v1`` (and of the paths outside it)."""

    status: Literal["error"]
    error: ErrorInfo
    meta: Meta


class OpenAIErrorInfo(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIError(BaseModel):
    """Every error of ``/oai/v1``, in OpenAI's shape: its statuses and type/code pairs (docs/clients.md)."""

    error: OpenAIErrorInfo


# What any request may get: a body over the limit, a request the HTTP parser refuses.
ANY_REQUEST = (ErrorCode.PAYLOAD_TOO_LARGE, ErrorCode.VALIDATION_ERROR)
KEYED = (*ANY_REQUEST, ErrorCode.AUTH_TOKEN_MISSING, ErrorCode.AUTH_TOKEN_INVALID, ErrorCode.AUTHZ_PERMISSION_DENIED,
         ErrorCode.RATE_LIMITED)
INFERENCE = (*KEYED, ErrorCode.MODEL_NOT_FOUND, ErrorCode.MODEL_ACCESS_DENIED, ErrorCode.MODEL_UNAVAILABLE,
             ErrorCode.BACKEND_ERROR, ErrorCode.BACKEND_TIMEOUT, ErrorCode.QUOTA_EXCEEDED, ErrorCode.BUDGET_EXCEEDED,
             ErrorCode.BACKEND_RATE_LIMITED)
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}

BINARY = {"type": "string", "format": "binary"}
# With stream: true. In OpenAPI 3.1 an event stream's schema describes one event: `data: {chunk}` frames
# (the OpenAI chunk as JSON) ending with `data: [DONE]`, and `event: error` for a failure after the start.
SSE = {"text/event-stream": {"schema": {"type": "object", "required": ["data"], "properties": {
    "event": {"type": "string", "enum": ["message", "error"]}, "data": {"type": "string"}}}}}

_request_schemas: dict[str, dict[str, Any]] = {}


def json_ok(model: Any, description: str, extra_content: dict[str, Any] | None = None) -> dict[int, dict[str, Any]]:
    """A 200 whose JSON body is ``model`` (and, optionally, other media types beside it)."""
    response: dict[str, Any] = {"model": model, "description": description}
    if extra_content:
        response["content"] = extra_content
    return {200: response}


def raw_ok(media_types: Iterable[str], description: str, text: bool = False) -> dict[int, dict[str, Any]]:
    """A 200 whose body is raw bytes (audio, media files) or text (transcripts, metrics), in one of ``media_types``."""
    schema = {"type": "string"} if text else BINARY
    return {200: {"description": description, "content": {media_type: {"schema": schema}
                                                          for media_type in media_types}}}


def error_responses(codes: Iterable[ErrorCode], openai: bool = False) -> dict[int, dict[str, Any]]:
    """One response per HTTP status, naming the codes it carries, with the envelope (or OpenAI's error) as body."""
    by_status: dict[int, list[str]] = {}
    statuses = OPENAI_STATUS if openai else HTTP_STATUS
    for code in dict.fromkeys(codes):
        by_status.setdefault(statuses[code], []).append(code.value)
    responses: dict[int, dict[str, Any]] = {}
    for status, names in sorted(by_status.items()):
        response: dict[str, Any] = {"model": OpenAIError if openai else ErrorEnvelope,
                                    "description": "error codes: " + ", ".join(names)}
        if status in (429, 503, 504):
            response["headers"] = RETRY_AFTER
        responses[status] = response
    return responses


def json_request(model: type[BaseModel]) -> dict[str, Any]:
    """``requestBody`` for a JSON body validated as ``model``."""
    return {"required": True, "content": {"application/json": {"schema": _register(model)}}}


def multipart_request(model: type[BaseModel], files: Iterable[str]) -> dict[str, Any]:
    """``requestBody`` for a form of ``model``'s fields plus the named file fields."""
    schema = model.model_json_schema(ref_template=REF)
    _request_schemas.update(schema.pop("$defs", {}))
    for name in files:
        schema["properties"][name] = BINARY
        schema.setdefault("required", []).append(name)
    return {"required": True, "content": {"multipart/form-data": {"schema": schema}}}


def documented(*, ok: dict[int, dict[str, Any]], errors: Iterable[ErrorCode], body: dict[str, Any] | None = None,
               openai: bool = False, keyed: bool = True) -> dict[str, Any]:
    """The keyword arguments of a route decorator that declare its whole contract."""
    extra: dict[str, Any] = {}
    if body is not None:
        extra["requestBody"] = body
    if keyed:
        extra["security"] = [{BEARER: []}]
    return {"responses": {**ok, **error_responses(errors, openai)}, "openapi_extra": extra or None}


def _register(model: type[BaseModel]) -> dict[str, str]:
    schema = model.model_json_schema(ref_template=REF)
    _request_schemas.update(schema.pop("$defs", {}))
    _request_schemas[model.__name__] = schema
    return {"$ref": REF.format(model=model.__name__)}


def install_openapi(app: FastAPI) -> None:
    """Serve the document with the request schemas the routes declared and the bearer-key scheme."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, description=app.description,
                                   routes=app.routes)
            components = document.setdefault("components", {})
            schemas = components.setdefault("schemas", {})
            for name, schema in _request_schemas.items():
                schemas.setdefault(name, schema)
            components["securitySchemes"] = {BEARER: {"type": "http", "scheme": "bearer",
                                                      "description": "an API key, sgk_…"}}
            for path, operations in document.get("paths", {}).items():
                if path.startswith("/oai/"):  # a bad parameter is OpenAI's 400 there, not FastAPI's own 422
                    for operation in operations.values():
                        operation.get("responses", {}).pop("422", None)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
