"""The envelope and the error codes: the one place that decides what every answer looks like.

``/v1/*`` answers ``{"status", "data" | "error", "meta"}``; ``/oai/v1/*`` answers
in OpenAI's own shape (``{"error": {...}}``), so the official SDK understands it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection
from enum import StrEnum
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from appliance.protocol.fields import field_path


log = logging.getLogger("appliance.gateway")


class ErrorCode(StrEnum):
    AUTH_TOKEN_MISSING = "AUTH_TOKEN_MISSING"
    AUTH_TOKEN_INVALID = "AUTH_TOKEN_INVALID"
    AUTHZ_PERMISSION_DENIED = "AUTHZ_PERMISSION_DENIED"
    VALIDATION_ERROR = "VALIDATION_ERROR"
    MODEL_NOT_FOUND = "MODEL_NOT_FOUND"
    MODEL_ACCESS_DENIED = "MODEL_ACCESS_DENIED"
    MODEL_UNAVAILABLE = "MODEL_UNAVAILABLE"
    BACKEND_ERROR = "BACKEND_ERROR"
    BACKEND_TIMEOUT = "BACKEND_TIMEOUT"
    RATE_LIMITED = "RATE_LIMITED"
    BUDGET_EXCEEDED = "BUDGET_EXCEEDED"
    QUOTA_EXCEEDED = "QUOTA_EXCEEDED"
    BACKEND_RATE_LIMITED = "BACKEND_RATE_LIMITED"
    NOT_FOUND = "NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    INTERNAL_ERROR = "INTERNAL_ERROR"


HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.AUTH_TOKEN_MISSING: 401,
    ErrorCode.AUTH_TOKEN_INVALID: 401,
    ErrorCode.AUTHZ_PERMISSION_DENIED: 403,
    ErrorCode.VALIDATION_ERROR: 422,
    ErrorCode.MODEL_NOT_FOUND: 404,
    ErrorCode.MODEL_ACCESS_DENIED: 403,
    ErrorCode.MODEL_UNAVAILABLE: 503,
    ErrorCode.BACKEND_ERROR: 502,
    ErrorCode.BACKEND_TIMEOUT: 504,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.BUDGET_EXCEEDED: 429,
    ErrorCode.QUOTA_EXCEEDED: 429,
    ErrorCode.BACKEND_RATE_LIMITED: 429,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.INTERNAL_ERROR: 500,
}

# Codes a retry cannot help (the docs' retry guidance): on /oai/v1 they carry ``x-should-retry: false``, which
# stops the openai SDK's automatic retries of every 429 and 5xx.
NOT_RETRYABLE = frozenset({
    ErrorCode.AUTH_TOKEN_MISSING, ErrorCode.AUTH_TOKEN_INVALID, ErrorCode.AUTHZ_PERMISSION_DENIED,
    ErrorCode.VALIDATION_ERROR, ErrorCode.MODEL_NOT_FOUND, ErrorCode.MODEL_ACCESS_DENIED,
    ErrorCode.BUDGET_EXCEEDED, ErrorCode.QUOTA_EXCEEDED,
})

# OpenAI's error "type" for each code, for the /oai/v1 surface.
OPENAI_TYPE: dict[int, str] = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


class ApiError(Exception):
    """An error answer: raised anywhere in a request, rendered by the handlers below."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        details: list[dict[str, str]] | None = None,
        retry_after: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self.retry_after = retry_after
        self.headers = headers or {}

    @property
    def status_code(self) -> int:
        return HTTP_STATUS[self.code]

    def to_dict(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code.value, "message": self.message}
        if self.details is not None:
            error["details"] = self.details
        if self.retry_after is not None:
            error["retry_after"] = self.retry_after
        return error


def validation_error(field: str, message: str) -> ApiError:
    """A VALIDATION_ERROR about one field, the message a sentence for a person."""
    return ApiError(ErrorCode.VALIDATION_ERROR, f"{field}: {message}", details=[{"field": field, "message": message}])


def errors_to_details(errors: list[dict[str, Any]], tags: Collection[str] = ()) -> list[dict[str, str]]:
    details: list[dict[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for err in errors:
        field = field_path(err.get("loc", ()), tags)
        if err.get("type") == "json_invalid":
            message = "the body is not valid JSON"
        elif err.get("type") == "missing":
            message = "this field is required"
        else:  # a validator's own sentence, without pydantic's "Value error, " in front of it
            message = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        if (field, message) not in seen:
            seen.add((field, message))
            details.append({"field": field, "message": message})
    return details


def from_validation_error(exc: ValidationError | RequestValidationError) -> ApiError:
    return from_errors(list(exc.errors()))


def from_errors(errors: list[dict[str, Any]], tags: Collection[str] = ()) -> ApiError:
    """A VALIDATION_ERROR for pydantic-style errors: the first in the message, all in ``details``."""
    details = errors_to_details(errors, tags)
    first = details[0] if details else {"field": "body", "message": "invalid request"}
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    return ApiError(ErrorCode.VALIDATION_ERROR, f"{first['field']}: {first['message']}{more}", details=details)


def request_id_of(request: Any) -> str:
    """The id of a request or of a batch line's call (anything with a ``state``)."""
    return getattr(request.state, "request_id", "") or ""


def is_openai_surface(path: str) -> bool:
    return path.startswith("/oai/")


def envelope(data: Any, request_id: str) -> dict[str, Any]:
    return {"status": "ok", "data": data, "meta": {"request_id": request_id}}


def ok(data: Any, request: Request, status_code: int = 200) -> Response:
    """``data`` in the success envelope; a pydantic model is serialised by pydantic-core, not the json module."""
    if isinstance(data, BaseModel):
        return ok_raw(data.model_dump_json().encode(), request, status_code)
    return JSONResponse(envelope(data, request_id_of(request)), status_code=status_code)


def ok_raw(data_json: bytes, request: Request, status_code: int = 200) -> Response:
    """Wrap JSON already serialised (a backend's answer, a model's dump) without decoding it: the hot path."""
    meta = b'{"request_id":' + json.dumps(request_id_of(request)).encode() + b"}"
    body = b'{"status":"ok","data":' + data_json + b',"meta":' + meta + b"}"
    return Response(body, status_code=status_code, media_type="application/json")


def error_response(exc: ApiError, path: str, request_id: str) -> JSONResponse:
    headers = dict(exc.headers)
    if exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    if is_openai_surface(path):
        if exc.code in NOT_RETRYABLE:
            headers["x-should-retry"] = "false"
        status = exc.status_code
        param = exc.details[0]["field"] if exc.details else None
        body: dict[str, Any] = {"error": {"message": exc.message, "type": OPENAI_TYPE.get(status, "api_error"),
                                          "param": param, "code": exc.code.value.lower()}}
    else:
        body = {"status": "error", "error": exc.to_dict(), "meta": {"request_id": request_id}}
    return JSONResponse(body, status_code=exc.status_code, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Every failure, ours or the framework's, leaves as an enveloped error."""

    async def on_api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        request.state.error_code = exc.code.value
        return error_response(exc, request.url.path, request_id_of(request))

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, (RequestValidationError, ValidationError))
        request.state.error_code = ErrorCode.VALIDATION_ERROR.value
        return error_response(from_validation_error(exc), request.url.path, request_id_of(request))

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404:
            err = ApiError(ErrorCode.NOT_FOUND, f"No route {request.method} {request.url.path}.")
        elif exc.status_code == 405:
            err = ApiError(ErrorCode.METHOD_NOT_ALLOWED, f"{request.method} is not allowed on {request.url.path}.",
                           headers={"Allow": (exc.headers or {}).get("Allow", "")})
        elif exc.status_code == 413:
            err = ApiError(ErrorCode.PAYLOAD_TOO_LARGE, str(exc.detail))
        elif exc.status_code < 500:
            err = ApiError(ErrorCode.VALIDATION_ERROR, str(exc.detail))
        else:
            err = ApiError(ErrorCode.INTERNAL_ERROR, "The appliance failed to handle this request.")
        request.state.error_code = err.code.value
        return error_response(err, request.url.path, request_id_of(request))

    async def on_bug(request: Request, exc: Exception) -> Response:
        # Starlette's last resort would answer a bare text/plain 500; a bug still answers in the envelope.
        log.error("unhandled error in %s %s (request %s)", request.method, request.url.path, request_id_of(request),
                  exc_info=exc)
        err = ApiError(ErrorCode.INTERNAL_ERROR, "The appliance failed to handle this request; it is logged.")
        return error_response(err, request.url.path, request_id_of(request))

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(Exception, on_bug)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(ValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
