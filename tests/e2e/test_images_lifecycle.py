"""Images over time: media links that expire, a full queue, and a worker killed mid-generation.

A dedicated appliance: media links live a few seconds, URLs use a configured
public base, and the worker queues nothing beyond the generation it runs.
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import catalogue_subset
from tests.support.appliance import RunningAppliance, start_appliance

TTL_S = 15  # long enough to download once on a loaded machine, short enough to wait out
PUBLIC_BASE = "https://images.example.test:8443/"
SMALL = "256x256"
DEADLINE_S = 180  # a bound on waiting, not a speed requirement


@pytest.fixture(scope="module")
def lifecycle_appliance(tiny_catalogue: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    state = tmp_path_factory.mktemp("images-lifecycle")
    options = {"sizes": ["1792x1024", SMALL], "steps": {"standard": 2, "hd": 3}, "max_queue": 0, "max_batch": 2}
    catalogue = catalogue_subset(tiny_catalogue, ["stability/sd-xl"], state / "models.toml", engine_options=options)
    env = {"APPLIANCE_MEDIA_TTL_S": str(TTL_S), "APPLIANCE_PUBLIC_BASE_URL": PUBLIC_BASE}
    with start_appliance(catalogue, state, env=env) as running:
        yield running


@pytest.fixture(scope="module")
def key(lifecycle_appliance: RunningAppliance) -> str:
    return lifecycle_appliance.create_key()


def generate(app: RunningAppliance, key: str, request_id: str | None = None, **body: Any) -> httpx.Response:
    payload = {"model": "openai/dall-e-3", "prompt": "a mountain lake", "size": SMALL, **body}
    headers = {"X-Request-ID": request_id} if request_id else {}
    with app.client(key, timeout=600) as client:
        return client.post("/v1/inference/images/generate", json=payload, headers=headers)


def wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.2)


def worker_pid(appliance: RunningAppliance) -> int:
    """The image worker process of this appliance (a grandchild, under its reaper guard)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    for pid, parent in parents.items():
        if parents.get(parent) != appliance.process.pid:
            continue
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[1:3] == [b"-m", b"appliance.workers.images"]:
            return pid
    raise AssertionError("no image worker process found")


def test_urls_use_the_public_base_and_expire(lifecycle_appliance: RunningAppliance, key: str) -> None:
    response = generate(lifecycle_appliance, key)
    assert response.status_code == 200, response.text
    url = response.json()["data"]["data"][0]["url"]
    assert url.startswith(PUBLIC_BASE + "v1/media/tok_")
    local = url.replace(PUBLIC_BASE.rstrip("/"), lifecycle_appliance.url)
    first = httpx.get(local, timeout=30)
    assert first.status_code == 200 and first.content.startswith(b"\x89PNG")
    media = lifecycle_appliance.state_dir / "media"
    assert len(os.listdir(media)) == 1
    wait_for(lambda: httpx.get(local, timeout=30).status_code == 404, "the link to expire")
    gone = httpx.get(local, timeout=30).json()
    assert gone["status"] == "error" and gone["error"]["code"] == "NOT_FOUND"
    wait_for(lambda: not os.listdir(media), "the sweeper to remove the expired file")


def test_a_full_queue_then_a_crash_mid_generation_then_recovery(
        lifecycle_appliance: RunningAppliance, key: str) -> None:
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        long_run = pool.submit(generate, lifecycle_appliance, key, "req-long-generation", n=10, size="1792x1024")
        wait_for(lambda: "(request req-long-generation)" in lifecycle_appliance.engine_log("stability/sd-xl") or long_run.done(),
                 "the long generation to start")
        assert not long_run.done(), long_run.result().text

        busy = generate(lifecycle_appliance, key)  # max_queue 0: nothing may wait behind the running generation
        assert busy.status_code == 429, busy.text
        assert busy.json()["error"]["code"] == "BACKEND_RATE_LIMITED"  # transient: retry, unlike a quota
        assert busy.json()["error"]["retry_after"] > 0 and int(busy.headers["retry-after"]) > 0

        os.kill(worker_pid(lifecycle_appliance), signal.SIGKILL)
        crashed = long_run.result(timeout=DEADLINE_S)
    assert crashed.status_code == 502, crashed.text
    assert crashed.json()["error"]["code"] == "BACKEND_ERROR"

    outcomes: list[str] = []

    def recovered() -> bool:
        response = generate(lifecycle_appliance, key)
        if response.status_code == 200:
            return True
        outcomes.append(response.json()["error"]["code"])
        return False

    wait_for(recovered, "the worker to be restarted")
    assert set(outcomes) <= {"MODEL_UNAVAILABLE"}, outcomes  # while restarting: retryable, never a 500
    with lifecycle_appliance.client() as client:
        assert client.get("/health").status_code == 200
