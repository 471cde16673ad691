"""A batch runs wide on an idle model and yields to live traffic: its chat lines beyond the live width stop,
go back to the queue, and run once more after the live traffic; each still answers exactly once.

The engine is the FAKE backend's ``slow`` mode (tests/support/fake_backend.py): every request runs long enough
for a live one to arrive while batch lines are in flight, and the fake keeps each body it got.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from aiohttp import web

from appliance.catalogue import parse_catalogue
from appliance.config import load_settings
from appliance.gateway.app import create_gateway
from appliance.metrics import BATCH_LINES
from tests.batch.helpers import DONE, b64
from tests.support.appliance import free_port
from tests.support.fake_backend import BODIES, make_app

MODEL = "fake/slow"
LINES = 8


def line(n: int) -> dict[str, Any]:
    return {"custom_id": f"c{n}", "method": "POST", "url": "/v1/inference/chat",
            "body": {"model": MODEL, "max_tokens": 4, "messages": [{"role": "user", "content": f"batch {n}"}]}}


async def run(tmp_path: Path) -> tuple[dict[str, Any], list[dict[str, Any]], list[str], float]:
    fake = make_app("fake-model")
    runner = web.AppRunner(fake)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    models = [{"slug": MODEL, "modality": "chat", "engine": "remote", "url": f"http://127.0.0.1:{port}/slow/v1",
               "remote_model": "fake-model"}]
    settings = load_settings(None, state_dir=tmp_path, batch_concurrency_per_model=LINES,
                             batch_concurrency_while_live=1, batch_yield_s=0.5)
    gateway = create_gateway(settings, parse_catalogue({"model": models}))
    app = gateway.app  # type: ignore[attr-defined]
    _key, secret = app.state.keys.create("yield")
    yielded_before = BATCH_LINES.labels("yielded")._value.get()
    try:
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=gateway), base_url="http://gateway", timeout=30,
                headers={"Authorization": f"Bearer {secret}"}) as client:
            created = await client.post("/v1/inference/batch", json={"input_file_base64": b64(
                [line(n) for n in range(LINES)])})
            assert created.status_code == 200, created.text
            batch_id = created.json()["data"]["id"]
            deadline = time.monotonic() + 30
            while len(fake[BODIES]) < LINES and time.monotonic() < deadline:  # all of them in flight, wide
                await asyncio.sleep(0.01)
            assert len(fake[BODIES]) == LINES
            live = await client.post("/v1/inference/chat", json={
                "model": MODEL, "max_tokens": 4, "messages": [{"role": "user", "content": "live"}]})
            assert live.status_code == 200, live.text
            yielded = BATCH_LINES.labels("yielded")._value.get() - yielded_before
            while time.monotonic() < deadline:
                batch = (await client.get(f"/v1/inference/batch/{batch_id}")).json()["data"]
                if batch["status"] in DONE:
                    break
                await asyncio.sleep(0.1)
            output = urlsplit(batch["output_file_url"])
            answer = await client.get(f"{output.path}?{output.query}")
            assert answer.status_code == 200, answer.text
            results = [httpx.Response(200, content=row).json() for row in answer.content.splitlines() if row]
    finally:
        await runner.cleanup()
    return batch, results, [body["messages"][0]["content"] for body in fake[BODIES]], yielded


def test_live_traffic_stops_the_batch_lines_beyond_the_live_width_and_each_still_answers_once(
        tmp_path: Path) -> None:
    batch, results, sent, yielded = asyncio.run(run(tmp_path))
    assert batch["status"] == "completed" and batch["request_counts"] == {"total": LINES, "completed": LINES,
                                                                         "failed": 0}
    assert sorted(result["custom_id"] for result in results) == [f"c{n}" for n in range(LINES)]  # exactly once
    assert yielded == LINES - 1  # all but the oldest line stopped when the live request came
    live_at = sent.index("live")
    assert sent[:live_at] == [f"batch {n}" for n in range(LINES)]
    resent = sent[live_at + 1:]  # the stopped lines went to the engine again, after the live request, once each
    assert len(resent) == len(set(resent)) == LINES - 1 and set(resent) < set(sent[:live_at])
