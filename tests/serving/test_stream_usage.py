"""Reading a stream's usage on its way out: counted always, shown only to a client that asked for it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from appliance.serving.context import Call, Surface
from appliance.serving.metering import meter_of
from appliance.serving.stream_usage import usage_tap, with_engine_usage


def frame(data: dict) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


CONTENT = frame({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "hi"}}]})
USAGE = frame({"object": "chat.completion.chunk", "choices": [],
               "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}})
DONE = b"data: [DONE]\n\n"


def run(chunks: list[bytes], asked: bool) -> tuple[bytes, Call]:
    request = Call(runtime=None, caller=None, surface=Surface.OPENAI, locate=str)  # type: ignore[arg-type]

    async def upstream() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    async def collect() -> bytes:
        return b"".join([chunk async for chunk in usage_tap(request, asked)(upstream())])

    return asyncio.run(collect()), request


def test_the_usage_chunk_is_counted_and_dropped_when_the_client_did_not_ask() -> None:
    out, request = run([CONTENT, CONTENT + USAGE + DONE], asked=False)
    assert out == CONTENT + CONTENT + DONE
    units = meter_of(request).units
    assert (units.tokens_in, units.tokens_out, units.known) == (12, 3, True)


def test_the_usage_chunk_stays_when_the_client_asked() -> None:
    out, request = run([CONTENT, USAGE, DONE], asked=True)
    assert out == CONTENT + USAGE + DONE and meter_of(request).units.known


def test_a_stream_without_usage_leaves_the_units_unknown_and_notes_an_error_frame() -> None:
    error = b'event: error\ndata: {"code":"BACKEND_ERROR","message":"boom"}\n\n'
    out, request = run([CONTENT, error + DONE], asked=False)
    assert out == CONTENT + error + DONE
    assert not meter_of(request).units.known and request.error_code == "BACKEND_ERROR"


def test_the_engine_is_always_asked_for_usage_and_other_stream_options_are_kept() -> None:
    assert with_engine_usage({"stream": True})["stream_options"] == {"include_usage": True}
    kept = with_engine_usage({"stream_options": {"include_usage": False, "continuous_usage_stats": True}})
    assert kept["stream_options"] == {"include_usage": True, "continuous_usage_stats": True}
