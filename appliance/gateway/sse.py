"""Relaying a worker's Server-Sent-Events stream (chat and generate) to the client, frame by frame.

Frames go out as they arrive, untouched. A failure before the first byte is an
ordinary error answer; a failure after it is an ``event: error`` frame, still
followed by ``data: [DONE]``. A client that goes away closes the upstream
connection, which makes vLLM abort the generation.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import anyio
from fastapi import Request
from fastapi.responses import StreamingResponse

from appliance.catalogue import ModelEntry
from appliance.gateway.errors import ApiError, ErrorCode, is_openai_surface
from appliance.gateway.relay import (RelayResponse, backend, backend_error, backend_headers, openai_error_fields,
                                     transport_error)
from appliance.supervisor.worker import Worker

DONE = b"data: [DONE]\n\n"
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def error_frame(error: ApiError, openai_shape: bool) -> bytes:
    """The frame that reports a failure after the stream began."""
    if openai_shape:  # the shape the openai SDK raises as an APIError
        data: dict[str, Any] = {"error": {"message": error.message, "type": "api_error", "param": None,
                                          "code": error.code.value.lower()}}
    else:
        data = {"code": error.code.value, "message": error.message}
    return b"event: error\ndata: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


async def relay_sse(request: Request, entry: ModelEntry, path: str, payload: bytes,
                    on_error: Callable[[ApiError], ApiError] = lambda error: error,
                    tap: Callable[[AsyncIterator[bytes]], AsyncIterator[bytes]] | None = None) -> StreamingResponse:
    """POST ``payload`` to the model's worker and answer with its event stream.

    ``on_error`` may refine an error the worker gives before streaming (e.g. name
    the field of a rejected request); ``tap`` filters the frames on their way
    out (accounting reads the usage chunk there). The worker stays counted in
    flight until the stream ends.
    """
    stack = contextlib.AsyncExitStack()
    try:
        worker = await stack.enter_async_context(backend(request, entry))
        try:
            upstream = await worker.session.post(f"http://worker{path}", data=payload,
                                                 headers=backend_headers(request), timeout=stream_timeout(worker))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise on_error(transport_error(worker, exc)) from None
        stack.callback(upstream.close)  # closes the connection, unless read to its end: vLLM aborts
        if upstream.status >= 400:
            raise on_error(backend_error(worker, upstream.status, await upstream.read()))
    except BaseException:
        await stack.aclose()
        raise
    frames = _frames(worker, upstream, stack, openai_shape=is_openai_surface(request.url.path))
    if tap is not None:
        frames = tap(frames)
    return RelayResponse(frames, media_type="text/event-stream", headers=SSE_HEADERS)


def stream_timeout(worker: Worker) -> aiohttp.ClientTimeout:
    """No limit on a whole stream (answers may be long); a limit on each wait for the next bytes."""
    return aiohttp.ClientTimeout(total=None, sock_connect=5.0, sock_read=worker.client.timeout.read)


async def _frames(worker: Worker, upstream: aiohttp.ClientResponse, stack: contextlib.AsyncExitStack,
                  openai_shape: bool) -> AsyncIterator[bytes]:
    pending = b""
    try:
        async for chunk in upstream.content.iter_any():
            data = pending + chunk if pending else chunk
            end = data.rfind(b"\n\n") + 2
            if end < 2:  # no whole frame yet
                pending = data
                continue
            frames, pending = data[:end], data[end:]
            if b'"error"' in frames:
                failed = _engine_error(worker, frames)
                if failed is not None:
                    kept, error = failed
                    yield kept + error_frame(error, openai_shape) + DONE
                    return
            yield frames
            if frames.endswith(DONE):
                return
        error = ApiError(ErrorCode.BACKEND_ERROR, f"The engine of model '{worker.entry.slug}' ended the stream "
                         "before it was complete.")
        yield error_frame(error, openai_shape) + DONE
    except (aiohttp.ClientError, TimeoutError) as exc:  # the engine died or hung mid-stream
        yield error_frame(_mid_stream(worker, exc), openai_shape) + DONE
    finally:
        with anyio.CancelScope(shield=True):  # even when the client's disconnect cancelled the response
            await stack.aclose()


def _mid_stream(worker: Worker, exc: aiohttp.ClientError | TimeoutError) -> ApiError:
    if isinstance(exc, TimeoutError):
        return transport_error(worker, exc)
    return ApiError(ErrorCode.BACKEND_ERROR, f"The engine of model '{worker.entry.slug}' failed while streaming "
                    f"({type(exc).__name__}); it is being restarted. Retrying once may help.")


def _engine_error(worker: Worker, frames: bytes) -> tuple[bytes, ApiError] | None:
    """The frames before an error frame the engine sent in-stream, and that error; None if there is none."""
    kept = b""
    for frame in frames.split(b"\n\n")[:-1]:
        if frame.startswith(b'data: {"error"') or frame.startswith(b"event: error"):
            body = frame.split(b"data: ", 1)[-1]
            message, _param = openai_error_fields(body)
            reason = f": {message}" if message else ""
            return kept, ApiError(ErrorCode.BACKEND_ERROR,
                                  f"The engine of model '{worker.entry.slug}' failed while streaming{reason}.")
        kept += frame + b"\n\n"
    return None
