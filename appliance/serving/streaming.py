"""Streamed answers: a worker's Server-Sent-Events (chat and generate) relayed frame by frame, and raw bytes.

Frames go out as they arrive, untouched. A failure before the first byte is an
ordinary error answer; a failure after it is an ``event: error`` frame, still
followed by ``data: [DONE]``. A client that goes away closes the upstream
connection, which makes vLLM abort the generation.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from appliance.backends.pool import Backend
from appliance.backends.transport import TransportError
from appliance.catalogue import ModelEntry
from appliance.serving.context import Call
from appliance.serving.errors import ApiError, ErrorCode
from appliance.serving.relay import Payload, Upstream, broken, describe, open_upstream, openai_error_fields

DONE = b"data: [DONE]\n\n"
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


@dataclass
class Stream:
    """A streamed answer, as a service returns it: the gateway sends ``chunks`` as they come, in ``media_type``.

    Closing ``chunks`` (also when the client goes away) releases the backend.
    """

    chunks: AsyncIterator[bytes]
    media_type: str
    headers: dict[str, str] = field(default_factory=dict)


def error_frame(error: ApiError, call: Call) -> bytes:
    """The frame that reports a failure after the stream began, in the call's surface's shape; the call's error."""
    call.error_code = error.code.value
    data: dict[str, Any] = call.stream_error(error) if call.stream_error is not None else \
        {"code": error.code.value, "message": error.message}
    return b"event: error\ndata: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


async def relay_sse(call: Call, entry: ModelEntry, path: str, payload: Payload,
                    on_error: Callable[[ApiError], ApiError] = lambda error: error,
                    tap: Callable[[AsyncIterator[bytes]], AsyncIterator[bytes]] | None = None) -> Stream:
    """POST ``payload`` to a backend of the model and answer with its event stream.

    ``on_error`` may refine an error the backend gives before streaming (e.g.
    name the field of a rejected request); ``tap`` filters the frames on their
    way out (accounting reads the usage chunk there). The backend stays counted
    in flight until the stream ends.
    """
    upstream = await open_upstream(call, entry, path, payload, on_error)
    frames = _frames(upstream, call)
    if tap is not None:
        frames = tap(frames)
    return Stream(frames, "text/event-stream", SSE_HEADERS)


def renamer(entry: ModelEntry) -> Callable[[bytes], bytes] | None:
    """A remote calls the model by its own name; the client's frames carry the slug it asked for."""
    if entry.served_model == entry.slug:
        return None
    theirs, ours = json.dumps(entry.served_model).encode(), json.dumps(entry.slug).encode()
    pairs = [(b'"model":' + theirs, b'"model":' + ours), (b'"model": ' + theirs, b'"model": ' + ours)]

    def rename(frames: bytes) -> bytes:
        for old, new in pairs:
            frames = frames.replace(old, new)
        return frames

    return rename


async def _frames(upstream: Upstream, call: Call) -> AsyncIterator[bytes]:
    backend = upstream.backend
    rename = renamer(backend.entry)
    pending = b""
    try:
        async for chunk in upstream.response.content.iter_any():
            data = pending + chunk if pending else chunk
            end = data.rfind(b"\n\n") + 2
            if end < 2:  # no whole frame yet
                pending = data
                continue
            frames, pending = data[:end], data[end:]
            if b'"error"' in frames:
                failed = _engine_error(backend, frames)
                if failed is not None:
                    kept, error = failed
                    yield kept + error_frame(error, call) + DONE
                    return
            if frames.endswith(DONE):  # the engine is done: its slot and connection go back before the client reads
                await upstream.stack.aclose()
                yield rename(frames) if rename else frames
                return
            yield rename(frames) if rename else frames
        error = ApiError(ErrorCode.BACKEND_ERROR, f"{describe(backend)} ended the stream before it was complete.")
        yield error_frame(error, call) + DONE
    except TransportError as exc:  # the engine died or hung mid-stream
        yield error_frame(await broken(backend, exc), call) + DONE
    finally:
        with anyio.CancelScope(shield=True):  # even when the client's disconnect cancelled the response
            await upstream.stack.aclose()


def _engine_error(backend: Backend, frames: bytes) -> tuple[bytes, ApiError] | None:
    """The frames before an error frame the engine sent in-stream, and that error; None if there is none."""
    kept = b""
    for frame in frames.split(b"\n\n")[:-1]:
        if frame.startswith(b'data: {"error"') or frame.startswith(b"event: error"):
            body = frame.split(b"data: ", 1)[-1]
            message, _param, _code = openai_error_fields(body)
            reason = f": {message}" if message else ""
            return kept, ApiError(ErrorCode.BACKEND_ERROR, f"{describe(backend)} failed while streaming{reason}.")
        kept += frame + b"\n\n"
    return None
