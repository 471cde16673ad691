"""The usage of a streamed chat or completion, read from its frames on the way to the client.

The gateway always asks the engine for usage (``stream_options.include_usage``);
the engine then ends the stream with one chunk holding ``usage`` and no
choices. That chunk goes on to the client only if the client asked for it
itself. An ``event: error`` frame is noted as the request's error code.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from appliance.accounting.units import apply_usage
from appliance.serving.context import Call
from appliance.serving.metering import meter_of

Tap = Callable[[AsyncIterator[bytes]], AsyncIterator[bytes]]


def with_engine_usage(data: dict[str, Any]) -> dict[str, Any]:
    """The engine payload of a stream, asking for the usage chunk (continuous stats kept as the client set them)."""
    options = dict(data.get("stream_options") or {})
    options["include_usage"] = True
    return {**data, "stream_options": options}


def usage_tap(call: Call, client_wants_usage: bool) -> Tap:
    """A filter over the relayed frames that counts the stream's usage into the call's meter."""
    meter = meter_of(call)

    def frame_out(frame: bytes) -> bytes | None:
        if frame.startswith(b"event: error"):
            if call.error_code is None:  # the relay notes the code of the frames it writes itself
                call.error_code = _error_code(frame.split(b"data: ", 1)[-1])
            return frame
        if not frame.startswith(b"data: {") or b'"usage"' not in frame:
            return frame
        try:
            chunk = json.loads(frame[6:])
        except ValueError:
            return frame
        usage = chunk.get("usage") if isinstance(chunk, dict) else None
        if isinstance(usage, dict):
            apply_usage(meter.units, usage)
        if client_wants_usage:
            return frame
        if not chunk.get("choices"):
            return None  # the usage chunk the gateway asked for: not the client's
        chunk.pop("usage", None)  # a client that did not ask sees none (continuous stats stay with who asked)
        return b"data: " + json.dumps(chunk, separators=(",", ":")).encode()

    async def tap(frames: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async with contextlib.aclosing(frames):  # type: ignore[type-var]
            async for data in frames:
                if b'"usage"' not in data and b"event: error" not in data:
                    yield data  # the common frame, untouched
                    continue
                kept = [out for frame in data.split(b"\n\n")[:-1] if (out := frame_out(frame)) is not None]
                if kept:
                    yield b"\n\n".join(kept) + b"\n\n"

    return tap


def _error_code(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    error = data.get("error", data) if isinstance(data, dict) else {}
    code = error.get("code") if isinstance(error, dict) else None
    return str(code).upper() if code else None
