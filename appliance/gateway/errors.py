"""The envelope and the error shapes: the one place that decides what every answer looks like on the wire.

``/v1/*`` answers ``{"status", "data" | "error", "meta"}``; the OpenAI surface
(``/oai/v1/*``) answers in OpenAI's own shape (``{"error": {...}}``), so the
official SDK understands it. Which surface a request is on is the route's to
say (``routing.py``); what went wrong is the service's (``serving/errors.py``).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from appliance.db.health import describe
from appliance.db.reserve import is_disk_full
from appliance.gateway.routing import surface_of
from appliance.serving.context import Surface
from appliance.serving.errors import NOT_RETRYABLE, ApiError, ErrorCode, from_errors

log = logging.getLogger("appliance.gateway")

# OpenAI's error "type" for each HTTP status, for the OpenAI surface.
OPENAI_TYPE: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def request_id_of(request: Request) -> str:
    return getattr(request.state, "request_id", "") or ""


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


def openai_error_body(exc: ApiError) -> dict[str, Any]:
    param = exc.details[0]["field"] if exc.details else None
    return {"error": {"message": exc.message, "type": OPENAI_TYPE.get(exc.status_code, "api_error"),
                      "param": param, "code": exc.code.value.lower()}}


def error_response(exc: ApiError, surface: Surface, request_id: str) -> JSONResponse:
    headers = dict(exc.headers)
    if exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    if surface is Surface.OPENAI:
        if exc.code in NOT_RETRYABLE:  # stops the openai SDK's automatic retries of every 429 and 5xx
            headers["x-should-retry"] = "false"
        body = openai_error_body(exc)
    else:
        body = {"status": "error", "error": exc.to_dict(), "meta": {"request_id": request_id}}
    return JSONResponse(body, status_code=exc.status_code, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Every failure, ours or the framework's, leaves as an enveloped error."""

    def answer(request: Request, err: ApiError) -> Response:
        request.state.error_code = err.code.value
        return error_response(err, surface_of(request.scope), request_id_of(request))

    async def on_api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return answer(request, exc)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, (RequestValidationError, ValidationError))
        return answer(request, from_errors(list(exc.errors())))

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
        return answer(request, err)

    async def on_bug(request: Request, exc: Exception) -> Response:
        if isinstance(exc, SQLAlchemyError | sqlite3.DatabaseError) and not is_disk_full(exc):  # damaged or away
            problem = describe(request.app.state.keys.engine.url, exc)
            log.error("%s %s failed: %s", request.method, request.url.path, problem.message)
            return answer(request, ApiError(ErrorCode.MODEL_UNAVAILABLE, f"The appliance cannot use its state "
                                            f"database now: {problem.message}.", retry_after=None if problem.lasting
                                            else 30))
        if is_disk_full(exc):  # not a bug: the operator's to fix, and the client's to hear of
            log.error("%s %s failed: the state directory's disk is full", request.method, request.url.path)
            return answer(request, ApiError(ErrorCode.QUOTA_EXCEEDED, "The appliance's disk is full, so it cannot "
                                            "record this change; delete files or ask the operator to free space."))
        # Starlette's last resort would answer a bare text/plain 500; a bug still answers in the envelope.
        log.error("unhandled error in %s %s (request %s)", request.method, request.url.path, request_id_of(request),
                  exc_info=exc)
        err = ApiError(ErrorCode.INTERNAL_ERROR, "The appliance failed to handle this request; it is logged.")
        return error_response(err, surface_of(request.scope), request_id_of(request))

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(Exception, on_bug)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(ValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
