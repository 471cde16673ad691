"""What every worker shares: its command line, OpenAI-shaped errors, and serving on a Unix socket."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from appliance.catalogue import ModelEntry
from appliance.protocol.fields import field_path

log = logging.getLogger("appliance.worker")


class WorkerError(Exception):
    """A request the engine refuses; rendered as an OpenAI error object."""

    def __init__(self, status_code: int, message: str, param: str | None = None,
                 error_type: str = "invalid_request_error", code: str | None = None,
                 retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.param = param
        self.error_type = error_type
        self.code = code  # OpenAI's finer code, e.g. context_length_exceeded
        self.retry_after = retry_after  # seconds, sent as Retry-After (the gateway passes it on)

    def response(self) -> JSONResponse:
        return openai_error(self.status_code, self.message, self.param, self.error_type, self.code, self.retry_after)


def openai_error(status_code: int, message: str, param: str | None = None, error_type: str = "invalid_request_error",
                 code: str | None = None, retry_after: int | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": error_type, "param": param, "code": code}}
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse(body, status_code=status_code, headers=headers)


def error_body(status_code: int, message: str, param: str | None = None,
               error_type: str = "invalid_request_error", code: str | None = None) -> bytes:
    return bytes(openai_error(status_code, message, param, error_type, code).body)


def invalid_request(exc: RequestValidationError | ValidationError) -> JSONResponse:
    """A 400 naming the first invalid field, for the FastAPI routes and the hot routes alike."""
    first: dict[str, Any] = exc.errors()[0]
    param = field_path(first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")  # a validator's own sentence, as the gateway shows it
    return openai_error(400, f"{param}: {message}", param)


RawHandler = Callable[[bytes], Awaitable[bytes]]


class HotRoutes:
    """A worker's hot POST routes as plain ASGI: the body's bytes in, JSON bytes out; the rest to FastAPI.

    The gateway is a worker's only client and sends well-formed requests, so a
    per-request framework (routing, dependency solving, five middleware layers)
    buys nothing there; it was a quarter of the embeddings worker's CPU per
    request. Errors keep the OpenAI shape of the FastAPI routes.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.routes: dict[str, RawHandler] = {}

    def post(self, path: str) -> Callable[[RawHandler], RawHandler]:
        def register(handler: RawHandler) -> RawHandler:
            self.routes[path] = handler
            return handler
        return register

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.routes.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if handler is None:
            await self.app(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        status, headers = 200, [(b"content-type", b"application/json")]
        try:
            answer = await handler(body)
        except WorkerError as exc:
            status, answer = exc.status_code, error_body(exc.status_code, exc.message, exc.param, exc.error_type,
                                                         exc.code)
            if exc.retry_after is not None:
                headers.append((b"retry-after", str(exc.retry_after).encode()))
        except ValidationError as exc:
            status, answer = 400, bytes(invalid_request(exc).body)
        except Exception as exc:  # the engine's failure is this request's, never the worker's
            log.exception("%s failed", scope["path"])
            status, answer = 500, error_body(500, f"the worker failed: {exc}", error_type="server_error")
        headers.append((b"content-length", str(len(answer)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": answer})


def create_worker_app(entry: ModelEntry) -> FastAPI:
    """A FastAPI app with the routes every worker has: health and its one model."""
    app = FastAPI(title=f"appliance worker: {entry.slug}", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(WorkerError)
    async def _worker_error(_request: Request, exc: WorkerError) -> JSONResponse:
        return exc.response()

    async def _invalid(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, (RequestValidationError, ValidationError))
        return invalid_request(exc)

    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(ValidationError, _invalid)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": entry.slug, "object": "model", "owned_by": "appliance"}]}

    return app


def worker_main(build_app: Callable[[ModelEntry], ASGIApp]) -> None:
    """Parse the worker's command line, load its model, and serve until told to stop."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--socket", required=True, help="Unix socket to serve on")
    parser.add_argument("--entry", required=True, help="the catalogue entry, as JSON")
    args = parser.parse_args()
    entry = ModelEntry.model_validate_json(args.entry)
    logging.basicConfig(level=os.environ.get("APPLIANCE_WORKER_LOG_LEVEL", "INFO"),
                        format=f"%(asctime)s worker[{entry.slug}] %(levelname)s %(message)s")
    app = build_app(entry)  # loads the model before the socket exists: healthy means loaded
    log.info("serving %s on %s", entry.slug, args.socket)
    # The gateway is the only client and closes idle connections first (after 2 s): a server that
    # closed them first would race a request onto a dying connection.
    uvicorn.run(app, uds=args.socket, log_level="warning", access_log=False, timeout_graceful_shutdown=10,
                timeout_keep_alive=300)
