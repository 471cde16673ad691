"""Batch lines and background responses reach an engine that schedules by priority with a low one; live requests
keep the default.

The engine here is the FAKE backend's ``record`` mode (tests/support/fake_backend.py),
which keeps every body the gateway sent it: the only way to see exactly what
goes over the wire. A remote backend gets the field only when its entry says it
runs vLLM's priority policy (vLLM documents that a server without it refuses
any priority but 0); the local vLLM is started with that policy
(tests/supervisor/test_vllm_launch.py, and its own log in tests/e2e/test_chat_api.py).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

from appliance.batch.endpoints import BATCH_PRIORITY
from appliance.catalogue import parse_catalogue
from appliance.config import load_settings
from appliance.gateway.app import create_gateway
from tests.batch.helpers import DONE, b64
from tests.support.appliance import free_port
from tests.support.fake_backend import BODIES, make_app


def line(custom_id: str, model: str) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/inference/chat",
            "body": {"model": model, "max_tokens": 4, "messages": [{"role": "user", "content": custom_id}]}}


async def sent_bodies(tmp_path: Path) -> dict[str, dict[str, Any]]:
    """Through a gateway on the fake: one batch line and one live request to each model; the bodies the fake
    got, by their message."""
    fake = make_app("fake-model")
    runner = web.AppRunner(fake)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    remote = {"modality": "chat", "engine": "remote", "url": f"http://127.0.0.1:{port}/record/v1",
              "remote_model": "fake-model"}
    models = [{"slug": "fake/priority", **remote, "engine_options": {"priority_scheduling": True}},
              {"slug": "fake/plain", **remote}]
    gateway = create_gateway(load_settings(None, state_dir=tmp_path), parse_catalogue({"model": models}))
    app = gateway.app  # type: ignore[attr-defined]
    _key, secret = app.state.keys.create("priority")
    try:
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=gateway), base_url="http://gateway", timeout=30,
                headers={"Authorization": f"Bearer {secret}"}) as client:
            for model in ("fake/priority", "fake/plain"):
                live = await client.post("/v1/inference/chat", json=line(f"live {model}", model)["body"])
                assert live.status_code == 200, live.text
            lines = [line(f"batch {model}", model) for model in ("fake/priority", "fake/plain")]
            created = await client.post("/v1/inference/batch", json={"input_file_base64": b64(lines)})
            assert created.status_code == 200, created.text
            batch = created.json()["data"]
            deadline = time.monotonic() + 60
            while batch["status"] not in DONE and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                batch = (await client.get(f"/v1/inference/batch/{batch['id']}")).json()["data"]
            assert batch["status"] == "completed" and batch["request_counts"]["completed"] == 2, batch
            for model in ("fake/priority", "fake/plain"):
                response = (await client.post("/oai/v1/responses", json={
                    "model": model, "input": f"background {model}", "background": True})).json()
                while response["status"] in ("queued", "in_progress") and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                    response = (await client.get(f"/oai/v1/responses/{response['id']}")).json()
                assert response["status"] == "completed", response
    finally:
        await runner.cleanup()
    return {body["messages"][0]["content"]: body for body in fake[BODIES]}


def test_batch_lines_and_background_responses_carry_the_low_priority_only_where_the_engine_takes_it(
        tmp_path: Path) -> None:
    bodies = asyncio.run(sent_bodies(tmp_path))
    assert bodies["batch fake/priority"]["priority"] == BATCH_PRIORITY > 0
    assert bodies["background fake/priority"]["priority"] == BATCH_PRIORITY  # the gateway's own call: below live
    assert "priority" not in bodies["live fake/priority"]  # live requests: vLLM's default 0, served first
    assert all("priority" not in bodies[f"{kind} fake/plain"] for kind in ("batch", "live", "background"))
