"""Live chat preempts batch lines already running: they are stopped, queued again, and still answered once."""

from __future__ import annotations

import re
import time
from pathlib import Path

from tests.batch.helpers import CHAT, b64, chat_line, wait_batch
from tests.batch.test_durability import custom_ids
from tests.conftest import catalogue_subset
from tests.support.appliance import start_appliance

# Eight lines in flight, one kept while live requests run: the other seven go back to the queue.
SETTINGS = {"APPLIANCE_BATCH_CONCURRENCY_PER_MODEL": "8", "APPLIANCE_BATCH_PREEMPT_KEEP": "1"}
LIVE = {"model": CHAT, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4}


def preempted(metrics: str) -> float:
    found = re.search(r'^appliance_batch_lines_total\{state="preempted"\} (\S+)$', metrics, re.M)
    return float(found.group(1)) if found else 0.0


def test_live_requests_preempt_running_batch_lines_and_every_line_is_still_answered_once(
        tiny_catalogue: Path, tmp_path: Path) -> None:
    catalogue = catalogue_subset(tiny_catalogue, [CHAT], tmp_path / "models.toml", load="startup")
    lines = [chat_line(f"line-{n}", max_tokens=24) for n in range(24)]
    with start_appliance(catalogue, tmp_path / "state", env=SETTINGS) as running:
        key = running.create_key()
        with running.client(key) as http:
            batch_id = http.post("/v1/inference/batch", json={"input_file_base64": b64(lines)}).json()["data"]["id"]
            deadline = time.monotonic() + 240
            live_answers = []
            while time.monotonic() < deadline:  # live traffic while the batch runs, one request at a time
                live_answers.append(http.post("/v1/inference/chat", json=LIVE).status_code)
                if preempted(http.get("/metrics").text) > 0:
                    break
            stopped = preempted(http.get("/metrics").text)
            done = wait_batch(http, batch_id, timeout=300)
            seen = custom_ids(done)
            usage = http.get("/v1/accounting/usage/summary", params={"group_by": "model"}).json()["data"]
    assert stopped > 0, "no batch line was preempted by the live requests"
    assert set(live_answers) == {200}
    assert done["status"] == "completed"
    assert done["request_counts"] == {"total": len(lines), "completed": len(lines), "failed": 0}
    assert set(seen) == {line["custom_id"] for line in lines} and set(seen.values()) == {1}
    # a preempted attempt is not metered: one usage row per line, plus the live requests
    requests = sum(row["request_count"] for row in usage["rows"])
    assert requests == len(lines) + len(live_answers)
