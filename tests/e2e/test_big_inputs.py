"""One huge input cannot take a model from everyone (issue 21, item 6; each test failed before its fix).

A text far past the model's window is refused by the gateway before any engine
tokenizes it; and while a worker tokenizes a large request, it still answers
its health checks, so the supervisor does not restart it under the other
clients' requests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from appliance.config import load_settings
from appliance.supervisor.local_backend import socket_file
from tests.conftest import catalogue_subset
from tests.support.appliance import RunningAppliance, start_appliance

EMBED = "openai/text-embedding-3-small"
CHAT = "scailabs/tiny-chat"
HUGE = "word " * (28 * 1024 * 1024 // 5)  # 28 MB, the size that once held a worker for 31 s


@pytest.fixture(scope="module")
def appliance(tiny_catalogue: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAppliance]:
    state = tmp_path_factory.mktemp("big-inputs-state")
    catalogue = catalogue_subset(tiny_catalogue, [EMBED, CHAT], state / "models.toml", load="on-demand")
    with start_appliance(catalogue, state) as running:
        yield running


@pytest.fixture(scope="module")
def http(appliance: RunningAppliance) -> Iterator[httpx.Client]:
    with appliance.client(appliance.create_key(), timeout=300) as client:
        yield client


def health_of_models(http: httpx.Client) -> dict[str, str]:
    return {item["slug"]: item["health_status"] for item in http.get("/v1/models").json()["data"]["items"]}


def test_a_text_far_past_the_window_is_refused_before_any_engine_sees_it(http: httpx.Client) -> None:
    embed = http.post("/v1/inference/embed", json={"model": EMBED, "input": ["short", HUGE]})
    assert embed.status_code == 422 and embed.json()["error"]["details"][0]["field"] == "input[1]", embed.text
    assert "window of 256 tokens" in embed.json()["error"]["message"]
    together = http.post("/v1/inference/embed", json={"model": EMBED, "input": ["word " * 50_000] * 40})
    assert together.status_code == 422 and "together" in together.json()["error"]["message"]
    chat = http.post("/v1/inference/chat", json={"model": CHAT, "messages": [{"role": "user", "content": HUGE}]})
    assert chat.status_code == 422 and chat.json()["error"]["details"][0]["field"] == "messages", chat.text
    generate = http.post("/v1/inference/generate", json={"model": CHAT, "prompt": HUGE})
    assert generate.status_code == 422 and generate.json()["error"]["details"][0]["field"] == "prompt"
    assert health_of_models(http) == {EMBED: "idle", CHAT: "idle"}  # no engine was started, let alone asked


def test_a_worker_answers_its_health_checks_while_it_tokenizes_a_large_request(
        appliance: RunningAppliance, http: httpx.Client) -> None:
    deadline = time.monotonic() + 180
    while http.post("/v1/inference/embed", json={"model": EMBED, "input": "wake up"}).status_code != 200:
        assert time.monotonic() < deadline, "the embeddings model did not load"
        time.sleep(1)  # on demand: it loads now
    socket = load_settings(None, state_dir=appliance.state_dir).socket_dir / socket_file(EMBED)
    big = ["many words here " * 4000] * 140  # 9 MB: under the gateway's bounds; seconds of tokenizing in all
    done: list[float] = []

    def send_big() -> None:
        answer = http.post("/v1/inference/embed", json={"model": EMBED, "input": big})
        assert answer.status_code == 422  # each text is over the model's 256 tokens: the worker says so
        done.append(time.monotonic())

    sender = threading.Thread(target=send_big)
    sender.start()
    answered: list[float] = []
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(socket)), base_url="http://worker", timeout=120) as worker:
        time.sleep(1.0)  # the request has reached the worker and is being counted
        while not done and len(answered) < 50:
            assert worker.get("/health").status_code == 200
            answered.append(time.monotonic())
            time.sleep(0.2)
    sender.join(300)
    # Answered again and again while the big request was in the worker (a blocked worker answers once, after it).
    assert done and len([moment for moment in answered if moment < done[0]]) >= 3, (answered, done)
