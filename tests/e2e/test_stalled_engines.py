"""An engine that stops working is found and restarted, and the requests it held end as BACKEND_TIMEOUT.

Issue 21, item 7 (each test failed before its fix): a vLLM engine core stopped
with SIGSTOP left /ready saying ready and its requests hanging for the whole
backend time-out (vLLM's own /health still answers); a stopped embeddings worker
failed its requests as BACKEND_ERROR, as if it had crashed.
"""

from __future__ import annotations

import signal
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import catalogue_subset
from tests.support.appliance import RunningAppliance, start_appliance
from tests.support.processes import alive, descendants, engine_process, wait_gone

EMBED = "openai/text-embedding-3-small"
VLLM = "scailabs/poolnoodle-omni"


def vllm_options(tiny_catalogue: Path) -> dict[str, object]:
    table = next(t for t in tomllib.loads(tiny_catalogue.read_text())["model"] if t["slug"] == VLLM)
    return dict(table.get("engine_options", {}))


def ask_in_background(http: httpx.Client, path: str, body: dict[str, object]) -> tuple[threading.Thread, list]:
    answers: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: answers.append(http.post(path, json=body)))
    thread.start()
    return thread, answers


def serves_again(http: httpx.Client, path: str, body: dict[str, object], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if http.post(path, json=body).status_code == 200:
            return
        time.sleep(1)
    raise AssertionError(f"{path} not served again within {timeout} s")


@pytest.fixture(scope="module")
def appliance(tiny_catalogue: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAppliance]:
    state = tmp_path_factory.mktemp("stall-state")
    catalogue = catalogue_subset(tiny_catalogue, [EMBED], state / "embed.toml")
    chat = catalogue_subset(tiny_catalogue, [VLLM], state / "chat.toml",
                            engine_options={**vllm_options(tiny_catalogue), "stall_timeout_s": 5})
    catalogue.write_text(catalogue.read_text() + "\n" + chat.read_text())
    with start_appliance(catalogue, state) as running:
        yield running


@pytest.fixture(scope="module")
def http(appliance: RunningAppliance) -> Iterator[httpx.Client]:
    with appliance.client(appliance.create_key(), timeout=600) as client:
        yield client


def test_a_stopped_vllm_engine_core_is_restarted_and_its_request_times_out(
        appliance: RunningAppliance, http: httpx.Client) -> None:
    body = {"model": VLLM, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    assert http.post("/v1/inference/chat", json=body).status_code == 200
    core = next(proc for proc in descendants(appliance.process.pid) if proc.name().startswith("VLLM::EngineCore"))
    core.send_signal(signal.SIGSTOP)
    try:
        thread, answers = ask_in_background(http, "/v1/inference/chat", {**body, "max_tokens": 32})
        thread.join(240)
        assert answers, "the request hung"
        error = answers[0].json()["error"]
        assert answers[0].status_code == 504 and error["code"] == "BACKEND_TIMEOUT", error
        assert "stopped responding" in error["message"]
        assert "no progress" in appliance.log()
        assert wait_gone([core], timeout=120) == []  # the stalled core is replaced, not left stopped
    finally:
        if alive(core):
            core.kill()
    serves_again(http, "/v1/inference/chat", body)


def test_a_stopped_embeddings_worker_times_its_requests_out_and_comes_back(
        appliance: RunningAppliance, http: httpx.Client) -> None:
    body = {"model": EMBED, "input": "hello"}
    assert http.post("/v1/inference/embed", json=body).status_code == 200
    worker = engine_process(appliance.process.pid, "appliance.workers.embeddings")
    worker.send_signal(signal.SIGSTOP)
    try:
        thread, answers = ask_in_background(http, "/v1/inference/embed", body)
        thread.join(240)
        assert answers, "the request hung"
        assert answers[0].status_code == 504 and answers[0].json()["error"]["code"] == "BACKEND_TIMEOUT"
    finally:
        if worker.is_running():
            worker.send_signal(signal.SIGCONT)
    serves_again(http, "/v1/inference/embed", body)
