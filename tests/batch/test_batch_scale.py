"""Large inputs are streamed: a 100k-line batch moves through the gateway without holding it in memory."""

from __future__ import annotations

import threading
from pathlib import Path

import psutil

from tests.batch.helpers import EMBED, embed_line, jsonl, wait_batch
from tests.conftest import catalogue_subset
from tests.support.appliance import start_appliance

LINES = 100_000
RSS_GROWTH_LIMIT = 100 * 1024 * 1024


class PeakRss:
    """The highest resident set size of a process, sampled in a thread until stopped."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = self.process.memory_info().rss
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self.done.wait(0.05):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.done.set()
        self.thread.join(5)


def test_a_100k_line_embed_batch_keeps_gateway_memory_flat(tiny_catalogue: Path, tmp_path: Path) -> None:
    catalogue = catalogue_subset(tiny_catalogue, [EMBED], tmp_path / "models.toml", load="startup")
    content = jsonl([embed_line(f"line-{n:06d}", f"text number {n}") for n in range(LINES)])
    with start_appliance(catalogue, tmp_path / "state") as running, running.client(running.create_key(),
                                                                                   timeout=300) as http:
        assert http.post("/v1/inference/embed", json={"model": EMBED, "input": "warm"}).status_code == 200
        baseline = psutil.Process(running.process.pid).memory_info().rss
        with PeakRss(running.process.pid) as rss:
            uploaded = http.post("/oai/v1/files", files={"file": ("big.jsonl", content)},
                                 data={"purpose": "batch"})
            assert uploaded.status_code == 200, uploaded.text
            created = http.post("/v1/inference/batch",
                                json={"input_file_url": f"scaigrid://file/{uploaded.json()['id']}"})
            assert created.status_code == 200, created.text
            batch = created.json()["data"]
            assert batch["status"] == "in_progress" and batch["request_counts"]["total"] == LINES
            wait_batch(http, batch["id"], until=("in_progress",))
            http.post(f"/v1/inference/batch/{batch['id']}/cancel")
            done = wait_batch(http, batch["id"], timeout=600)  # finalizing writes all 100k lines
            errors = http.get(f"/oai/v1/files/{done['error_file_id']}/content")
    assert done["status"] == "cancelled"
    assert done["request_counts"]["completed"] + done["request_counts"]["failed"] == LINES
    assert errors.text.count("\n") == done["request_counts"]["failed"]
    print(f"gateway RSS grew by {(rss.peak - baseline) / 2**20:.1f} MiB over {LINES} lines")
    assert rss.peak - baseline < RSS_GROWTH_LIMIT, f"gateway RSS grew by {(rss.peak - baseline) / 2**20:.0f} MiB"
