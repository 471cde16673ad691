"""A FAKE OpenAI-compatible backend, for the faults no real engine produces on demand.

Named as a fake on purpose: the real-engine tests cover what real servers do.
This one answers ``GET …/v1/models`` properly and misbehaves on every POST in
the way the first path segment names:

- ``/garbage/v1``: HTTP 200 with a body that is not JSON;
- ``/html/v1``: HTTP 502 with a proxy's HTML error page;
- ``/unauthorized/v1``: HTTP 401 on the POST (the key it was given is wrong);
- ``/hang/v1``: never answers (for 60 s);
- ``/cut/v1``: starts an SSE stream and drops the connection mid-way;
- ``/markup/v1``: streams a chat answer made of HTML (``<img onerror>``, ``<script>``), for escaping tests;
- ``/status-NNN/v1``: an OpenAI error object with HTTP status NNN (and ``Retry-After: 7``);
- ``/record/v1``: not a fault: a one-word chat completion, keeping each request body in ``app[BODIES]`` (what
  exactly the gateway sends, e.g. a batch line's ``priority``);
- ``/slow/v1``: the same, answered after ``SLOW_S`` (requests that are still running when something happens).

Run: ``python -m tests.support.fake_backend PORT MODEL``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from aiohttp import web

BODIES = web.AppKey("bodies", list)
SLOW_S = 0.5


# A chat answer that runs code wherever a page inserts it as HTML.
MARKUP = ("<img src=x onerror=\"window.__injected='chat'\">", "<script>window.__injected='chat'</script>", " done")


def make_app(model: str) -> web.Application:
    async def models(_request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": model, "object": "model"}]})

    async def misbehave(request: web.Request) -> web.StreamResponse:
        mode = request.match_info["mode"]
        await request.read()
        if mode in ("record", "slow"):
            request.app[BODIES].append(await request.json())
            if mode == "slow":
                await asyncio.sleep(SLOW_S)
            return web.json_response({"id": "chatcmpl-fake", "object": "chat.completion", "model": model,
                                      "choices": [{"index": 0, "finish_reason": "stop",
                                                   "message": {"role": "assistant", "content": "hi"}}],
                                      "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
        if mode == "garbage":
            return web.Response(body=b"this is not json", content_type="application/json")
        if mode == "html":
            return web.Response(status=502, body=b"<html><body><h1>502 Bad Gateway</h1></body></html>",
                                content_type="text/html")
        if mode == "unauthorized":
            return web.json_response({"error": {"message": "Invalid API key sgk_wrong", "type": "auth"}},
                                     status=401)
        if mode.startswith("status-"):
            status = int(mode.removeprefix("status-"))
            param = "messages" if status in (400, 422) else None
            return web.json_response({"error": {"message": f"the fake says {status}", "type": "fake", "param": param}},
                                     status=status, headers={"Retry-After": "7"})
        if mode == "hang":
            await asyncio.sleep(60)
            return web.Response(status=204)
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        if mode == "markup":
            for piece in MARKUP:
                delta = json.dumps({"id": "x", "object": "chat.completion.chunk",
                                    "choices": [{"index": 0, "delta": {"content": piece}}]})
                await response.write(f"data: {delta}\n\n".encode())
            await response.write(b"data: [DONE]\n\n")
            return response
        chunk = b'data: {"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n'
        await response.write(chunk)
        await asyncio.sleep(0.2)
        assert request.transport is not None
        request.transport.abort()  # mid-stream, no [DONE]
        return response

    app = web.Application()
    app[BODIES] = []
    app.router.add_get("/{mode}/v1/models", models)
    app.router.add_post("/{mode}/v1/{tail:.*}", misbehave)
    return app


@contextlib.contextmanager
def serve_fake(log: Path) -> Iterator[str]:
    """The fake in its own process on a free loopback port: its origin (``http://127.0.0.1:PORT``)."""
    from tests.support.appliance import free_port
    from tests.support.vllm import wait_http

    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "tests.support.fake_backend", str(port), "fake-model"],
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/garbage/v1/models", process, log, timeout=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait(10)


if __name__ == "__main__":
    web.run_app(make_app(sys.argv[2]), host="127.0.0.1", port=int(sys.argv[1]), print=None)
