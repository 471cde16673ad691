"""What every worker shares: its command line, OpenAI-shaped errors, and serving on a Unix socket."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from appliance.catalogue import ModelEntry
from appliance.protocol.fields import field_path

log = logging.getLogger("appliance.worker")


class WorkerError(Exception):
    """A request the engine refuses; rendered as an OpenAI error object."""

    def __init__(self, status_code: int, message: str, param: str | None = None,
                 error_type: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.param = param
        self.error_type = error_type


def openai_error(status_code: int, message: str, param: str | None = None,
                 error_type: str = "invalid_request_error") -> JSONResponse:
    body = {"error": {"message": message, "type": error_type, "param": param, "code": None}}
    return JSONResponse(body, status_code=status_code)


def create_worker_app(entry: ModelEntry) -> FastAPI:
    """A FastAPI app with the routes every worker has: health and its one model."""
    app = FastAPI(title=f"appliance worker: {entry.slug}", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(WorkerError)
    async def _worker_error(_request: Request, exc: WorkerError) -> JSONResponse:
        return openai_error(exc.status_code, exc.message, exc.param, exc.error_type)

    async def _invalid(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, (RequestValidationError, ValidationError))
        first: dict[str, Any] = exc.errors()[0]
        param = field_path(first["loc"])
        return openai_error(400, f"{param}: {first['msg']}", param)

    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(ValidationError, _invalid)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": entry.slug, "object": "model", "owned_by": "appliance"}]}

    return app


def worker_main(build_app: Callable[[ModelEntry], FastAPI]) -> None:
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
