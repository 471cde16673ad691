"""The envelope and the error shapes: the one place that decides what every answer looks like on the wire.

``/v1/*`` answers ``{"status", "data" | "error", "meta"}``; the OpenAI surface
(``/oai/v1/*``) answers in OpenAI's own shape (``{"error": {...}}``) with
OpenAI's statuses and its ``type``/``code`` pairs, so the SDKs and the
libraries on them (LangChain, LlamaIndex, litellm) raise what they raise
against OpenAI. Which surface a request is on is the route's to say
(``routing.py``); what went wrong is the service's (``serving/errors.py``).
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
from appliance.gateway.routing import openai_twin, surface_of
from appliance.serving.context import Surface
from appliance.serving.errors import HTTP_STATUS, NOT_RETRYABLE, ApiError, ClientGone, ErrorCode, from_errors

log = logging.getLogger("appliance.gateway")
CLIENT_CLOSED_REQUEST = 499  # nginx's status of a request its client gave up on: what its usage row records

# OpenAI's (type, code) for each of the contract's codes, as api.openai.com answers them: a wrong key is
# ("invalid_request_error", "invalid_api_key"), a missing one has no code, an unknown model is "model_not_found",
# a rate limit ("requests", "rate_limit_exceeded"), a spent quota ("insufficient_quota", "insufficient_quota"), a
# refusal 403 "request_forbidden", a failure ("server_error", None), an overloaded service
# ("service_unavailable_error", "server_is_overloaded").
OPENAI_ERRORS: dict[ErrorCode, tuple[str, str | None]] = {
    ErrorCode.VALIDATION_ERROR: ("invalid_request_error", None),
    ErrorCode.AUTH_TOKEN_MISSING: ("invalid_request_error", None),
    ErrorCode.AUTH_TOKEN_INVALID: ("invalid_request_error", "invalid_api_key"),
    ErrorCode.AUTHZ_PERMISSION_DENIED: ("request_forbidden", None),
    ErrorCode.MODEL_ACCESS_DENIED: ("request_forbidden", None),
    ErrorCode.MODEL_NOT_FOUND: ("invalid_request_error", "model_not_found"),
    ErrorCode.NOT_FOUND: ("invalid_request_error", None),
    ErrorCode.METHOD_NOT_ALLOWED: ("invalid_request_error", None),
    ErrorCode.PAYLOAD_TOO_LARGE: ("invalid_request_error", None),
    ErrorCode.RATE_LIMITED: ("requests", "rate_limit_exceeded"),
    ErrorCode.BACKEND_RATE_LIMITED: ("requests", "rate_limit_exceeded"),
    ErrorCode.BUDGET_EXCEEDED: ("insufficient_quota", "insufficient_quota"),
    ErrorCode.QUOTA_EXCEEDED: ("insufficient_quota", "insufficient_quota"),
    ErrorCode.MODEL_UNAVAILABLE: ("service_unavailable_error", "server_is_overloaded"),
    ErrorCode.INTERNAL_ERROR: ("server_error", None),
    ErrorCode.BACKEND_ERROR: ("server_error", None),
    ErrorCode.BACKEND_TIMEOUT: ("server_error", None),
}
# OpenAI answers a bad request 400 where the ScaiGrid contract says 422.
OPENAI_STATUS: dict[ErrorCode, int] = {**HTTP_STATUS, ErrorCode.VALIDATION_ERROR: 400}


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
    """``{"error": {message, type, param, code}}`` as OpenAI's API writes it."""
    param = exc.details[0]["field"] if exc.details else None
    kind, code = OPENAI_ERRORS[exc.code]
    message = exc.message
    if exc.reason is not None:
        code = exc.reason.value
        # The openai SDK (3.x) puts only the message in str(error), which is where LangChain looks for the code
        # to raise its ContextOverflowError (and trim the history).
        message = f"{message} ({code})"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def stream_error_body(exc: ApiError, surface: Surface) -> dict[str, Any]:
    """The data of the ``event: error`` frame that ends a stream that failed after it began."""
    if surface is Surface.OPENAI:  # what the openai SDKs raise as an APIError
        return openai_error_body(exc)
    return {"code": exc.code.value, "message": exc.message}


def error_status(exc: ApiError, surface: Surface) -> int:
    return OPENAI_STATUS[exc.code] if surface is Surface.OPENAI else exc.status_code


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
    return JSONResponse(body, status_code=error_status(exc, surface), headers=headers)


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
            twin = openai_twin(app, request.scope)
            if twin is not None:  # an OpenAI client given base_url …/v1: an answer it can parse, and the way
                err = ApiError(ErrorCode.NOT_FOUND, f"No route {request.method} {request.url.path}: this appliance "
                               f"serves the OpenAI API under /oai/v1 (here {request.method} {twin}); set the "
                               "client's base_url to http://HOST:PORT/oai/v1.")
                request.state.error_code = err.code.value
                return error_response(err, Surface.OPENAI, request_id_of(request))
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

    async def on_client_gone(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ClientGone)
        return Response(status_code=CLIENT_CLOSED_REQUEST)  # nobody reads it; the usage row says what happened

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(ClientGone, on_client_gone)
    app.add_exception_handler(Exception, on_bug)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(ValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
