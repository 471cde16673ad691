"""Worker supervision end to end: lazy start, crashes, time-outs, draining, and no orphans."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import tomli_w

from appliance.config import load_settings
from appliance.supervisor.vllm_launch import VLLM_MODULE
from tests.conftest import catalogue_subset
from tests.support.appliance import RunningAppliance, start_appliance
from tests.support.processes import alive, descendants, engine_process, wait_gone

EMBED = "openai/text-embedding-3-small"
WORKER = "appliance.workers.embeddings"
VLLM = "scailabs/poolnoodle-omni"


def embed(client: httpx.Client, model: str = EMBED) -> httpx.Response:
    return client.post("/v1/inference/embed", json={"model": model, "input": ["hello", "world"]})


def wait_until_served(client: httpx.Client, timeout: float = 90) -> list[httpx.Response]:
    """Call until a 200 comes back; returns every answer on the way (bounded)."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = embed(client)
        seen.append(response)
        if response.status_code == 200:
            return seen
        time.sleep(0.25)
    raise AssertionError(f"not served within {timeout} s: {[r.text for r in seen[-3:]]}")


@pytest.fixture(scope="module")
def fragile(tiny_catalogue: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAppliance]:
    """An on-demand embed model, no waiting for starts, and a 3-second backend time-out."""
    state = tmp_path_factory.mktemp("fragile")
    path = catalogue_subset(tiny_catalogue, [EMBED], state / "models.toml", load="on-demand")
    with path.open("a") as fh:  # a model of another modality, to call by the wrong route
        fh.write(tomli_w.dumps({"model": [{"slug": "acme/chat", "aliases": ["acme/chat-alias"],
                                           "modality": "chat", "engine": "remote",
                                           "url": "http://127.0.0.1:9/v1"}]}))
    env = {"APPLIANCE_REQUEST_WAIT_S": "0", "APPLIANCE_BACKEND_TIMEOUT_S": "3"}
    with start_appliance(path, state, env=env) as running:
        yield running


@pytest.fixture(scope="module")
def fragile_key(fragile: RunningAppliance) -> str:
    return fragile.create_key()


def test_an_on_demand_model_answers_model_unavailable_while_it_loads(fragile: RunningAppliance,
                                                                      fragile_key: str) -> None:
    with fragile.client(fragile_key) as client:
        first = embed(client)
        assert first.status_code == 503, first.text
        error = first.json()["error"]
        assert error["code"] == "MODEL_UNAVAILABLE" and error["retry_after"] >= 1
        assert first.headers["retry-after"] == str(error["retry_after"])
        assert "loading" in error["message"]
        seen = wait_until_served(client)
    assert {r.status_code for r in seen[:-1]} <= {503}


def test_a_model_of_another_modality_is_a_validation_error(fragile: RunningAppliance, fragile_key: str) -> None:
    with fragile.client(fragile_key) as client:
        response = embed(client, model="acme/chat-alias")
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["details"][0]["field"] == "model"
    assert "chat model" in error["message"] and "embedding model" in error["message"]


def test_a_hung_engine_is_backend_timeout(fragile: RunningAppliance, fragile_key: str) -> None:
    with fragile.client(fragile_key) as client:
        wait_until_served(client)
        engine = engine_process(fragile.process.pid, WORKER)
        engine.suspend()  # a real hang: the process exists and accepts, but never answers
        try:
            response = embed(client)
        finally:
            engine.resume()
        assert response.status_code == 504, response.text
        assert response.json()["error"]["code"] == "BACKEND_TIMEOUT"
        assert embed(client).status_code == 200


def test_an_engine_killed_mid_request_is_backend_error_then_it_recovers(fragile: RunningAppliance,
                                                                          fragile_key: str) -> None:
    with fragile.client(fragile_key) as client:
        wait_until_served(client)
        engine = engine_process(fragile.process.pid, WORKER)
        engine.suspend()  # hold the request inside the engine, then kill it there
        answers: list[httpx.Response] = []
        caller = threading.Thread(target=lambda: answers.append(embed(client)))
        caller.start()
        time.sleep(1.0)
        engine.kill()
        caller.join(30)
        assert answers and answers[0].status_code == 502, answers and answers[0].text
        error = answers[0].json()["error"]
        assert error["code"] == "BACKEND_ERROR" and "restarted" in error["message"]
        seen = wait_until_served(client)
    # A call racing the crash (sent before the supervisor saw the death) may also be a BACKEND_ERROR;
    # from then on it is MODEL_UNAVAILABLE with retry_after until the worker is back.
    codes = [r.json()["error"]["code"] for r in seen[:-1]]
    first_unavailable = codes.index("MODEL_UNAVAILABLE") if "MODEL_UNAVAILABLE" in codes else len(codes)
    assert set(codes[:first_unavailable]) <= {"BACKEND_ERROR"} and len(codes[:first_unavailable]) <= 2
    assert set(codes[first_unavailable:]) <= {"MODEL_UNAVAILABLE"}
    assert all(r.headers.get("retry-after") for r in seen[first_unavailable:-1])
    metrics = httpx.get(f"{fragile.url}/metrics").text
    assert 'appliance_worker_restarts_total{model="openai/text-embedding-3-small"} 1.0' in metrics


def _startup_appliance(tiny_catalogue: Path, state: Path):  # type: ignore[no-untyped-def]
    path = catalogue_subset(tiny_catalogue, [EMBED], state / "models.toml")
    return start_appliance(path, state)


def test_sigterm_drains_in_flight_requests_and_stops_every_worker(tiny_catalogue: Path, tmp_path: Path) -> None:
    with _startup_appliance(tiny_catalogue, tmp_path) as running:
        key = running.create_key()
        children = descendants(running.process.pid)
        assert any(WORKER in p.cmdline() for p in children)
        engine = engine_process(running.process.pid, WORKER)
        engine.suspend()
        answers: list[httpx.Response] = []
        with running.client(key) as client:
            caller = threading.Thread(target=lambda: answers.append(embed(client)))
            caller.start()
            time.sleep(1.0)
            running.process.send_signal(signal.SIGTERM)
            time.sleep(1.0)
            engine.resume()
            caller.join(30)
        # uvicorn re-raises the SIGTERM after a clean shutdown; systemd counts that as a clean stop
        assert running.process.wait(60) in (0, -signal.SIGTERM)
        assert "all workers stopped" in running.log()
        assert answers and answers[0].status_code == 200, answers and answers[0].text
        assert wait_gone(children) == []
        assert not list(load_settings(None, state_dir=tmp_path).socket_dir.glob("*.sock"))


def test_workers_do_not_outlive_a_killed_gateway(tiny_catalogue: Path, tmp_path: Path) -> None:
    with _startup_appliance(tiny_catalogue, tmp_path) as running:
        children = descendants(running.process.pid)
        assert any(WORKER in p.cmdline() for p in children)
        running.process.send_signal(signal.SIGKILL)
        running.process.wait(10)
        assert wait_gone(children) == []


def test_a_catalogue_with_a_missing_path_fails_at_start_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text('[[model]]\nslug = "acme/embed"\nmodality = "embedding"\nengine = "sentence-transformers"\n'
                    'path = "/nowhere/model"\n')
    result = subprocess.run([sys.executable, "-m", "appliance.cli", "serve", "--config", str(path),
                             "--state-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"{path}: model 'acme/embed' (entry 1): field 'path': no such file or directory: /nowhere/model" \
        in result.stderr


def model_health(client: httpx.Client, slug: str) -> str:
    return client.get(f"/v1/models/{slug.replace('/', '%2F')}").json()["data"]["health_status"]


def test_the_gpu_ledger_unloads_an_idle_model_to_make_room(tiny_catalogue: Path, tmp_path: Path) -> None:
    tiny = tiny_catalogue.parent / "embed-1536"
    models = [{"slug": slug, "modality": "embedding", "engine": "sentence-transformers", "path": str(tiny),
               "load": "on-demand", "gpu_memory_gb": 6} for slug in ("acme/first", "acme/second")]
    catalogue = tmp_path / "models.toml"
    catalogue.write_text(tomli_w.dumps({"settings": {"gpu_memory_gb": 10}, "model": models}))
    with start_appliance(catalogue, tmp_path / "state", env={"APPLIANCE_REQUEST_WAIT_S": "60"}) as running:
        with running.client(running.create_key()) as client:
            assert embed(client, "acme/first").status_code == 200
            assert model_health(client, "acme/first") == "healthy"
            assert embed(client, "acme/second").status_code == 200  # 6 + 6 > 10: first had to go
            assert model_health(client, "acme/first") == "idle"
            assert model_health(client, "acme/second") == "healthy"
    assert "unloading acme/first to make room for acme/second" in running.log()


def test_an_idle_on_demand_model_is_unloaded(tiny_catalogue: Path, tmp_path: Path) -> None:
    path = catalogue_subset(tiny_catalogue, [EMBED], tmp_path / "models.toml", load="on-demand", idle_unload_s=1)
    with start_appliance(path, tmp_path / "state", env={"APPLIANCE_REQUEST_WAIT_S": "60"}) as running:
        with running.client(running.create_key()) as client:
            assert embed(client).status_code == 200
            engine = engine_process(running.process.pid, WORKER)
            deadline = time.monotonic() + 30
            while model_health(client, EMBED) != "idle" and time.monotonic() < deadline:
                time.sleep(0.5)
            assert model_health(client, EMBED) == "idle"
            assert wait_gone([engine]) == []  # its process, and so its memory, is gone
            assert embed(client).status_code == 200  # and it comes back on the next call


# --- nothing outlives the gateway, however it dies ------------------------------------------------------------


def python_with_a_helper(directory: Path) -> Path:
    """An interpreter for the worker that first starts a helper process in the engine's group, as vLLM starts its
    engine core: the real worker, with a real grandchild of its guard (`sleep 600`)."""
    wrapper = directory / "python-with-helper"
    wrapper.write_text(f'#!/bin/sh\nsleep 600 &\nexec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def helpers(tree: list[psutil.Process]) -> list[psutil.Process]:
    return [p for p in tree if alive(p) and p.cmdline()[:2] == ["sleep", "600"]]


def kill_whole_group_mid_request(running: RunningAppliance, engine_module: str,
                                 request: Callable[[], object]) -> None:
    """Hold a request inside the engine, then SIGKILL the gateway's whole process group, as `kill -9 -PGID` does."""
    engine = engine_process(running.process.pid, engine_module)
    engine.suspend()
    sent: list[bool] = []

    def call() -> None:
        sent.append(True)
        with contextlib.suppress(httpx.HTTPError):  # the gateway dies under it
            request()

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(1.0)
    os.killpg(running.process.pid, signal.SIGKILL)
    running.process.wait(10)
    caller.join(30)
    assert sent and not caller.is_alive()


def test_nothing_outlives_a_sigkill_of_the_gateways_whole_group_mid_request(tiny_catalogue: Path,
                                                                             tmp_path: Path) -> None:
    catalogue = catalogue_subset(tiny_catalogue, [EMBED], tmp_path / "models.toml",
                                 python=str(python_with_a_helper(tmp_path)))
    with start_appliance(catalogue, tmp_path / "state", new_session=True) as running:
        key = running.create_key()
        tree = descendants(running.process.pid)
        assert helpers(tree)  # the grandchild is there
        with running.client(key) as client:
            kill_whole_group_mid_request(running, WORKER, lambda: embed(client))
    assert wait_gone(tree) == []  # the guard, the engine and the engine's helper


def test_vllms_engine_core_dies_with_a_gateway_whose_whole_group_is_killed(tiny_catalogue: Path,
                                                                          tmp_path: Path) -> None:
    catalogue = catalogue_subset(tiny_catalogue, [VLLM], tmp_path / "models.toml", load="startup")
    with start_appliance(catalogue, tmp_path / "state", new_session=True) as running:
        key = running.create_key()
        tree = descendants(running.process.pid)
        assert {"VLLM::EngineCore", "VLLM::Worker"} <= {p.name() for p in tree}
        body = {"model": VLLM, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 256}
        with running.client(key) as client:
            kill_whole_group_mid_request(running, VLLM_MODULE,
                                         lambda: client.post("/v1/inference/chat", json=body))
    assert wait_gone(tree) == []


def leave_engines_behind(catalogue: Path, state: Path) -> list[psutil.Process]:
    """Start an appliance, then kill its gateway's group while its guards cannot act (SIGSTOP), as if they had
    died with it (as they did when they were in the gateway's group): its engines are left running."""
    with start_appliance(catalogue, state, new_session=True) as running:
        tree = descendants(running.process.pid)
        for guard in (p for p in tree if "appliance.supervisor.reaper" in p.cmdline()):
            guard.suspend()
        os.killpg(running.process.pid, signal.SIGKILL)
        running.process.wait(10)
    assert helpers(tree)
    return tree


def test_a_start_stops_the_engines_left_by_a_gateway_of_its_own_state_dir_only(tiny_catalogue: Path,
                                                                              tmp_path: Path) -> None:
    catalogue = catalogue_subset(tiny_catalogue, [EMBED], tmp_path / "models.toml", load="startup",
                                 python=str(python_with_a_helper(tmp_path)))
    mine = leave_engines_behind(catalogue, tmp_path / "mine")
    others = leave_engines_behind(catalogue, tmp_path / "other")
    try:
        with start_appliance(catalogue, tmp_path / "mine") as again:
            assert [p for p in mine if alive(p)] == []  # gone before the new gateway answered
            assert f"stopped 3 engine process(es) that a previous gateway of {tmp_path / 'mine'} left" in again.log()
            assert all(alive(p) for p in others)  # another state dir's: not this gateway's to stop
    finally:
        for proc in others:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
