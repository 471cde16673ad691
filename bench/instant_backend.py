"""An instant OpenAI-compatible backend, for measuring relays (bench/peers.py, bench/responses.py).

    python bench/instant_backend.py PORT [MODEL]

Answers ``GET /v1/models`` (listing MODEL, default ``instant``),
``POST /v1/embeddings`` at once with a fixed 8-float vector per input, and
``POST /v1/chat/completions`` with ``max_tokens`` chunks of one word (whole or
streamed, its usage last), so what a relay in front of it costs is all that a
measurement sees. It is the stand-in for a GPU-speed engine, not a fake of
one: nothing is tested against it.
"""

from __future__ import annotations

import json
import sys

from aiohttp import web

VECTOR = [0.125, -0.25, 0.375, -0.5, 0.625, -0.75, 0.875, -1.0]


def make_app(model: str) -> web.Application:
    listing = json.dumps({"object": "list", "data": [{"id": model, "object": "model", "owned_by": "bench"}]})
    answers: dict[int, bytes] = {}

    def answer(count: int) -> bytes:
        if count not in answers:
            answers[count] = json.dumps({
                "object": "list", "model": model,
                "data": [{"object": "embedding", "index": i, "embedding": VECTOR} for i in range(count)],
                "usage": {"prompt_tokens": count, "total_tokens": count}}).encode()
        return answers[count]

    async def models(_request: web.Request) -> web.Response:
        return web.Response(text=listing, content_type="application/json")

    async def embeddings(request: web.Request) -> web.Response:
        body = await request.json()
        texts = body.get("input")
        count = len(texts) if isinstance(texts, list) and texts and not isinstance(texts[0], int) else 1
        return web.Response(body=answer(count), content_type="application/json")

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        count = int(body.get("max_tokens") or 16)
        usage = {"prompt_tokens": 12, "completion_tokens": count, "total_tokens": 12 + count}
        base = {"id": "chatcmpl-instant", "created": 1700000000, "model": model}
        if not body.get("stream"):
            message = {"role": "assistant", "content": "word " * count}
            return web.Response(body=json.dumps({**base, "object": "chat.completion", "choices": [
                {"index": 0, "message": message, "finish_reason": "length"}], "usage": usage}).encode(),
                content_type="application/json")
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)

        def frame(choices: list[dict[str, object]], **more: object) -> bytes:
            chunk = {**base, "object": "chat.completion.chunk", "choices": choices, **more}
            return b"data: " + json.dumps(chunk).encode() + b"\n\n"

        await response.write(frame([{"index": 0, "delta": {"role": "assistant", "content": ""},
                                     "finish_reason": None}]))
        for _ in range(count):
            await response.write(frame([{"index": 0, "delta": {"content": "word "}, "finish_reason": None}]))
        await response.write(frame([{"index": 0, "delta": {}, "finish_reason": "length"}]))
        await response.write(frame([], usage=usage) + b"data: [DONE]\n\n")
        return response

    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_post("/v1/chat/completions", chat)
    return app


if __name__ == "__main__":
    web.run_app(make_app(sys.argv[2] if len(sys.argv) > 2 else "instant"), host="127.0.0.1", port=int(sys.argv[1]),
                print=None, access_log=None)
