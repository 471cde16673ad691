"""A batch survives SIGKILL of its gateway with each line answered exactly once; cancel stops it mid-run."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.batch.helpers import CHAT, b64, chat_line, read_lines, wait_batch
from tests.conftest import catalogue_subset
from tests.support.appliance import start_appliance

# A killed runner's claims are re-queued 3 s after its last renewal; 16 lines in flight make the runner claim
# and commit in groups (of 4 at least), so the kill lands between a group's claim and its results.
STALE = {"APPLIANCE_BATCH_STALE_S": "3", "APPLIANCE_BATCH_CONCURRENCY_PER_MODEL": "16"}
# Fewer lines in flight than the batch has, so that some are still queued when it is cancelled.
NARROW = {"APPLIANCE_BATCH_CONCURRENCY_PER_MODEL": "16"}


def wait_progress(http: httpx.Client, batch_id: str, completed: int, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = http.get(f"/v1/inference/batch/{batch_id}").json()["data"]
        if batch["request_counts"]["completed"] >= completed:
            return batch
        time.sleep(0.05)
    raise TimeoutError(f"batch {batch_id} did not reach {completed} completed lines")


def custom_ids(batch: dict) -> Counter[str]:
    seen: Counter[str] = Counter()
    for url in (batch["output_file_url"], batch["error_file_url"]):
        if url:
            seen.update(line["custom_id"] for line in read_lines(url))
    return seen


def test_sigkill_mid_batch_then_restart_answers_every_line_exactly_once(tiny_catalogue: Path,
                                                                        tmp_path: Path) -> None:
    catalogue = catalogue_subset(tiny_catalogue, [CHAT], tmp_path / "models.toml", load="startup")
    lines = [chat_line(f"line-{n}", max_tokens=16) for n in range(120)]
    with start_appliance(catalogue, tmp_path / "state", env=STALE) as first:
        key = first.create_key()
        with first.client(key) as http:
            batch_id = http.post("/v1/inference/batch", json={"input_file_base64": b64(lines)}).json()["data"]["id"]
            before = wait_progress(http, batch_id, completed=5)
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(30)
    assert before["request_counts"]["completed"] < len(lines), "the batch ended before the kill; nothing tested"
    with start_appliance(catalogue, tmp_path / "state", env=STALE) as second:
        with second.client(key) as http:
            done = wait_batch(http, batch_id, timeout=300)
            seen = custom_ids(done)
    assert done["status"] == "completed"
    assert done["request_counts"] == {"total": len(lines), "completed": len(lines), "failed": 0}
    assert set(seen) == {line["custom_id"] for line in lines} and set(seen.values()) == {1}
    assert "re-queued" in second.log()


def test_cancel_mid_run_keeps_what_completed_and_closes_the_rest(tiny_catalogue: Path, tmp_path: Path) -> None:
    catalogue = catalogue_subset(tiny_catalogue, [CHAT], tmp_path / "models.toml", load="startup")
    lines = [chat_line(f"line-{n}", max_tokens=16) for n in range(200)]
    with start_appliance(catalogue, tmp_path / "state", env=NARROW) as running, \
            running.client(running.create_key()) as http:
        batch_id = http.post("/v1/inference/batch", json={"input_file_base64": b64(lines)}).json()["data"]["id"]
        wait_progress(http, batch_id, completed=1)
        cancelled = http.post(f"/v1/inference/batch/{batch_id}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["data"]["status"] in ("cancelling", "cancelled")
        assert cancelled.json()["data"]["cancelling_at"] is not None
        done = wait_batch(http, batch_id)
        seen = custom_ids(done)
        errors, output = read_lines(done["error_file_url"]), read_lines(done["output_file_url"])
    assert done["status"] == "cancelled" and done["cancelled_at"] is not None
    counts = done["request_counts"]
    assert 1 <= counts["completed"] < len(lines) and counts["completed"] + counts["failed"] == len(lines)
    assert set(seen) == {line["custom_id"] for line in lines} and set(seen.values()) == {1}
    assert {line["error"]["code"] for line in errors} == {"batch_cancelled"}
    assert len(output) == counts["completed"] and all(line["response"]["status_code"] == 200 for line in output)


@pytest.mark.parametrize("window", ["1h"])
def test_the_window_sets_expires_at(tiny_catalogue: Path, tmp_path: Path, window: str) -> None:
    catalogue = catalogue_subset(tiny_catalogue, [CHAT], tmp_path / "models.toml", load="on-demand")
    with start_appliance(catalogue, tmp_path / "state") as running, running.client(running.create_key()) as http:
        batch = http.post("/v1/inference/batch", json={"input_file_base64": b64([chat_line("x")]),
                                                       "endpoint_completion_window": window}).json()["data"]
    assert batch["expires_at"] - batch["created_at"] == 3600
