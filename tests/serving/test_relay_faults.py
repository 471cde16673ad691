"""How the gateway maps each way a backend can fail, against the FAKE backend, in-process and fast.

The fake (tests/support/fake_backend.py) produces on demand what real engines
cannot: every HTTP error, garbage, a hang, a cut stream. The gateway runs in
this process (ASGI) with remote models on the fake; the real-engine tests
(tests/e2e) cover the same paths with real servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from appliance.catalogue import parse_catalogue
from appliance.config import load_settings
from appliance.gateway.app import create_gateway
from appliance.gateway.errors import OPENAI_ERRORS
from appliance.serving.errors import ErrorCode
from tests.support.appliance import free_port
from tests.support.fake_backend import make_app

MODES = ["status-400", "status-401", "status-403", "status-404", "status-413", "status-422", "status-429",
         "status-500", "status-503", "garbage", "html", "hang", "cut"]


@contextlib.asynccontextmanager
async def gateway_on_fake(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    runner = web.AppRunner(make_app("fake-model"))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    dead = free_port()
    models = [{"slug": f"fake/{mode}", "modality": "chat", "engine": "remote", "timeout_s": 1,
               "url": f"http://127.0.0.1:{port}/{mode}/v1", "remote_model": "fake-model"} for mode in MODES]
    models.append({"slug": "fake/dead", "modality": "chat", "engine": "remote", "url": f"http://127.0.0.1:{dead}/v1"})
    settings = load_settings(None, state_dir=tmp_path, request_wait_s=2, remote_probe_interval_s=0.2)
    gateway = create_gateway(settings, parse_catalogue({"model": models}))
    app = gateway.app  # type: ignore[attr-defined]
    _key, secret = app.state.keys.create("faults")
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=gateway)
            async with httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=30,
                                         headers={"Authorization": f"Bearer {secret}"}) as client:
                yield client
    finally:
        await runner.cleanup()


def chat(model: str, **more: object) -> dict[str, object]:
    return {"model": model, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}], **more}


@pytest.mark.parametrize(("mode", "status", "code", "retry_after"), [
    ("status-400", 422, "VALIDATION_ERROR", None),
    ("status-422", 422, "VALIDATION_ERROR", None),
    ("status-401", 502, "BACKEND_ERROR", None),
    ("status-403", 502, "BACKEND_ERROR", None),
    ("status-404", 502, "BACKEND_ERROR", None),
    ("status-413", 413, "PAYLOAD_TOO_LARGE", None),
    ("status-429", 429, "BACKEND_RATE_LIMITED", 7),
    ("status-500", 502, "BACKEND_ERROR", None),
    ("status-503", 503, "MODEL_UNAVAILABLE", 7),
    ("garbage", 502, "BACKEND_ERROR", None),
    ("html", 502, "BACKEND_ERROR", None),
    ("hang", 504, "BACKEND_TIMEOUT", 5),
])
def test_each_failure_of_a_backend_is_its_contract_code(tmp_path: Path, mode: str, status: int, code: str,
                                                        retry_after: int | None) -> None:
    async def scenario() -> None:
        async with gateway_on_fake(tmp_path) as client:
            for path in ("/v1/inference/chat", "/oai/v1/chat/completions"):
                response = await client.post(path, json=chat(f"fake/{mode}"))
                openai = path.startswith("/oai/")
                assert response.status_code == (400 if openai and status == 422 else status), response.text
                error = response.json()["error"]
                assert error["code"] == (OPENAI_ERRORS[ErrorCode(code)][1] if openai else code)
                assert error["message"] and "Traceback" not in error["message"]
                if path.startswith("/v1"):
                    assert error.get("retry_after") == retry_after
                    if code == "VALIDATION_ERROR":
                        assert error["details"][0]["field"] == "messages"  # the backend's param, kept

    asyncio.run(scenario())


def test_a_stream_cut_mid_way_ends_with_an_error_frame_and_done(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with gateway_on_fake(tmp_path) as client:
            response = await client.post("/v1/inference/chat", json=chat("fake/cut", stream=True))
            assert response.status_code == 200
            frames = [f for f in response.text.split("\n\n") if f]
            assert frames[0].startswith("data: {") and frames[-1] == "data: [DONE]"
            event, data = frames[-2].split("\n")
            assert event == "event: error" and json.loads(data.removeprefix("data: "))["code"] == "BACKEND_ERROR"

    asyncio.run(scenario())


def test_a_backend_nobody_listens_on_is_unavailable_with_retry_after(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with gateway_on_fake(tmp_path) as client:
            response = await client.post("/v1/inference/chat", json=chat("fake/dead"))
            assert response.status_code == 503
            error = response.json()["error"]
            assert error["code"] == "MODEL_UNAVAILABLE" and error["retry_after"] >= 1
            assert "remote:127.0.0.1:" in error["message"]

    asyncio.run(scenario())
