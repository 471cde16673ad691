"""From a route to a model's backend and back: resolve the model, reach its worker, map its failures."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anyio
import httpx
from fastapi import Request
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from appliance.catalogue import Catalogue, ModelEntry
from appliance.db.keys import ApiKey
from appliance.gateway.auth import check_model_access
from appliance.gateway.errors import ApiError, ErrorCode, request_id_of
from appliance.supervisor.supervisor import ModelUnavailable, Supervisor
from appliance.supervisor.worker import Worker

MODALITY_NAMES = {"chat": "a chat", "embedding": "an embedding", "image": "an image",
                  "transcription": "a transcription", "speech": "a speech"}


def resolve_model(request: Request, key: ApiKey, name: str, modality: str) -> ModelEntry:
    """The catalogue entry the client asked for, checked against the route's modality and the key."""
    catalogue: Catalogue = request.app.state.catalogue
    entry = catalogue.get(name)
    if entry is None:
        raise ApiError(ErrorCode.MODEL_NOT_FOUND, f"No model '{name}' on this appliance; GET /v1/models lists them.")
    if entry.modality != modality:
        raise ApiError(ErrorCode.VALIDATION_ERROR,
                       f"model: '{name}' is {MODALITY_NAMES[entry.modality]} model; this endpoint needs "
                       f"{MODALITY_NAMES[modality]} model.",
                       details=[{"field": "model", "message": f"'{name}' is {MODALITY_NAMES[entry.modality]} model"}])
    check_model_access(key, entry)
    request.state.model = entry.slug
    return entry


@contextlib.asynccontextmanager
async def backend(request: Request, entry: ModelEntry) -> AsyncIterator[Worker]:
    """The model's ready worker for the length of one call; MODEL_UNAVAILABLE if it cannot serve now."""
    supervisor: Supervisor = request.app.state.supervisor
    try:
        worker = await supervisor.acquire(entry)
    except ModelUnavailable as exc:
        raise ApiError(ErrorCode.MODEL_UNAVAILABLE, exc.message, retry_after=exc.retry_after) from None
    request.state.backend = worker.backend_id
    async with worker.use():
        yield worker


def backend_headers(request: Request) -> dict[str, str]:
    return {"content-type": "application/json", "x-request-id": request_id_of(request)}


async def post_json(request: Request, worker: Worker, path: str, payload: bytes) -> bytes:
    """POST to the worker and return its JSON body, or raise the ApiError its failure means."""
    try:
        async with worker.session.post(f"http://worker{path}", data=payload,
                                       headers=backend_headers(request)) as response:
            status, body = response.status, await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise transport_error(worker, exc) from None
    if status >= 400:
        raise backend_error(worker, status, body)
    return body


def transport_error(worker: Worker, exc: httpx.HTTPError | aiohttp.ClientError | TimeoutError) -> ApiError:
    slug = worker.entry.slug
    if isinstance(exc, (httpx.TimeoutException, TimeoutError)):
        return ApiError(ErrorCode.BACKEND_TIMEOUT, f"Model '{slug}' did not answer in time.", retry_after=5)
    if isinstance(exc, (httpx.ConnectError, aiohttp.ClientConnectorError)):
        return ApiError(ErrorCode.MODEL_UNAVAILABLE, f"Model '{slug}' is not reachable right now; it is being "
                        "restarted.", retry_after=worker.retry_after_s())
    return ApiError(ErrorCode.BACKEND_ERROR, f"The engine of model '{slug}' failed while answering "
                    f"({type(exc).__name__}); it is being restarted. Retrying once may help.")


def backend_error(worker: Worker, status: int, body: bytes) -> ApiError:
    """Map an OpenAI-style error answer of a worker onto the contract's codes."""
    message, param = openai_error_fields(body)
    slug = worker.entry.slug
    if status in (400, 422):
        field = param or "body"
        return ApiError(ErrorCode.VALIDATION_ERROR, message or f"Model '{slug}' rejected the request.",
                        details=[{"field": field, "message": message or "rejected by the model"}])
    if status == 413:
        return ApiError(ErrorCode.PAYLOAD_TOO_LARGE, message or "The request is too large for this model.")
    if status == 429:
        return ApiError(ErrorCode.BACKEND_RATE_LIMITED, message or f"Model '{slug}' is at capacity.", retry_after=5)
    if status == 503:
        return ApiError(ErrorCode.MODEL_UNAVAILABLE, message or f"Model '{slug}' is not ready.", retry_after=5)
    detail = f": {message}" if message else ""
    return ApiError(ErrorCode.BACKEND_ERROR, f"The engine of model '{slug}' failed (HTTP {status}){detail}.")


def openai_error_fields(body: bytes) -> tuple[str | None, str | None]:
    try:
        data: Any = json.loads(body)
    except ValueError:
        return None, None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        return error.get("message"), error.get("param")
    if isinstance(data, dict) and isinstance(data.get("detail"), str):
        return data["detail"], None
    return None, None


class BackendStream:
    """A worker's streamed answer, held open (worker, connection) until its chunks are consumed or dropped."""

    def __init__(self, response: httpx.Response, chunks: AsyncIterator[bytes]) -> None:
        self.response = response
        self.chunks = chunks

    @property
    def media_type(self) -> str | None:
        return self.response.headers.get("content-type")


async def open_stream(request: Request, entry: ModelEntry, path: str, payload: bytes,
                      content_type: str = "application/json") -> BackendStream:
    """POST to the model's worker and stream its answer back.

    A failure before the first byte raises the ApiError it means (so the client
    gets a clean error); a failure later cuts the stream, which the client sees
    as an incomplete body rather than a short answer that looks whole.
    """
    stack = contextlib.AsyncExitStack()
    try:
        worker = await stack.enter_async_context(backend(request, entry))
        headers = {**backend_headers(request), "content-type": content_type}
        try:
            response = await stack.enter_async_context(
                worker.client.stream("POST", path, content=payload, headers=headers))
            if response.status_code >= 400:
                raise backend_error(worker, response.status_code, await response.aread())
        except httpx.HTTPError as exc:
            raise transport_error(worker, exc) from None
    except BaseException:
        await stack.aclose()
        raise

    async def chunks() -> AsyncIterator[bytes]:
        try:
            async for chunk in response.aiter_raw():
                yield chunk
        except httpx.HTTPError as exc:
            raise RuntimeError(f"the worker of '{entry.slug}' broke off its stream ({type(exc).__name__})") from None
        finally:
            await stack.aclose()

    return BackendStream(response, chunks())


class RelayResponse(StreamingResponse):
    """A StreamingResponse that always closes its frames, hence the upstream connection, when it ends.

    Starlette cancels a response whose client went away while it waits to send,
    which leaves the frame generator suspended at a ``yield``; closed only by the
    garbage collector, it would keep vLLM generating for nobody.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()  # type: ignore[attr-defined]
