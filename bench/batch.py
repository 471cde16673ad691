"""Batch throughput through the appliance vs vLLM's own offline ``run-batch``, and live latency under a batch.

* Throughput: chat lines per second of one OpenAI batch (``/oai/v1/files`` +
  ``/oai/v1/batches``, submission to ``completed``) vs ``vllm run-batch`` on the
  same model, options and file; run-batch's time is its own progress bar's
  (whole seconds, model load excluded). Aim: appliance ≥ 0.9 × run-batch.
* Fairness: p99 of sequential live chat requests while that batch runs vs on an
  idle appliance. Aim: ≤ 1.5 × idle.

    .venv/bin/python bench/batch.py [--lines 200] [--max-tokens 16] [--probes 40] [--catalogue models.toml]

Without ``--catalogue`` it uses the tiny vLLM model (``appliance tiny-models``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from appliance.catalogue import load_catalogue  # noqa: E402
from appliance.supervisor.vllm_launch import option_flags, vllm_environment, vllm_python  # noqa: E402
from tests.conftest import catalogue_subset  # noqa: E402
from tests.support.appliance import start_appliance  # noqa: E402

MODEL = "scailabs/poolnoodle-omni"


def lines_file(path: Path, count: int, max_tokens: int) -> Path:
    with path.open("w") as fh:
        for n in range(count):
            body = {"model": MODEL, "max_tokens": max_tokens, "temperature": 0,
                    "messages": [{"role": "user", "content": f"Tell me about number {n}."}]}
            fh.write(json.dumps({"custom_id": f"l{n}", "method": "POST", "url": "/v1/chat/completions",
                                 "body": body}) + "\n")
    return path


def run_batch_s(entry: object, source: Path, work: Path) -> float:
    """Seconds ``vllm run-batch`` spent running the lines (its progress bar's elapsed time: load excluded)."""
    options = {k: v for k, v in entry.engine_options.items() if not k.startswith("tool_")}  # type: ignore[attr-defined]
    command = [vllm_python(entry), "-m", "vllm.entrypoints.openai.run_batch",  # type: ignore[arg-type]
               "-i", str(source), "-o", str(work / "out.jsonl"), "--model", str(entry.path),  # type: ignore[attr-defined]
               "--served-model-name", MODEL, *option_flags(options)]
    done = subprocess.run(command, check=True, capture_output=True, text=True, timeout=1800,
                          env={**os.environ, **vllm_environment(entry)})  # type: ignore[arg-type]
    bars = re.findall(r"Running batch: 100% Completed \| \d+/\d+ \[(?:(\d+):)?(\d+):(\d+)<", done.stderr)
    assert bars, done.stderr[-2000:]
    hours, minutes, seconds = bars[-1]
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds)


def probe_latencies(http: httpx.Client, count: int | None, stop: threading.Event | None = None) -> list[float]:
    """Sequential live chat requests: ``count`` of them, or until ``stop``."""
    took: list[float] = []
    body = {"model": MODEL, "max_tokens": 8, "temperature": 0, "messages": [{"role": "user", "content": "Hi"}]}
    while (count is None or len(took) < count) and not (stop and stop.is_set()):
        started = time.perf_counter()
        assert http.post("/v1/inference/chat", json=body).status_code == 200
        took.append(time.perf_counter() - started)
    return took


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 2 else values[0]


def run_oai_batch(http: httpx.Client, file_id: str) -> float:
    """Seconds from submitting one OpenAI batch of ``file_id`` to its completion."""
    started = time.perf_counter()
    batch = http.post("/oai/v1/batches", json={"input_file_id": file_id, "endpoint": "/v1/chat/completions",
                                               "completion_window": "24h"}).json()
    while batch["status"] not in ("completed", "failed", "expired", "cancelled"):
        time.sleep(0.1)
        batch = http.get(f"/oai/v1/batches/{batch['id']}").json()
    assert batch["status"] == "completed" and batch["request_counts"]["failed"] == 0, batch
    return time.perf_counter() - started


def appliance_leg(catalogue: Path, state: Path, source: Path, probes: int,
                  concurrency: int) -> tuple[float, list[float], list[float]]:
    """The batch alone (throughput); live probes idle; then live probes while the same batch runs again."""
    env = {"APPLIANCE_BATCH_CONCURRENCY_PER_MODEL": str(concurrency)}
    with start_appliance(catalogue, state, env=env) as running:
        key = running.create_key()
        with running.client(key, timeout=600) as http, running.client(key, timeout=600) as live:
            probe_latencies(http, 3)  # warm
            file_id = http.post("/oai/v1/files", files={"file": ("in.jsonl", source.read_bytes())},
                                data={"purpose": "batch"}).json()["id"]
            took = run_oai_batch(http, file_id)
            idle = probe_latencies(http, probes)
            stop = threading.Event()
            busy: list[float] = []
            prober = threading.Thread(target=lambda: busy.extend(probe_latencies(live, None, stop)))
            prober.start()
            run_oai_batch(http, file_id)
            stop.set()
            prober.join(600)
    return took, idle, busy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--probes", type=int, default=40)
    parser.add_argument("--catalogue", type=Path, default=None)
    parser.add_argument("--concurrency", type=int, default=4, help="batch_concurrency_per_model")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.catalogue is None:
            tiny = REPO / ".cache" / "tiny-models"
            subprocess.run([sys.executable, "-m", "appliance.cli", "tiny-models", str(tiny)], check=True)
            catalogue = catalogue_subset(tiny / "models.toml", [MODEL], work / "models.toml", load="startup")
        else:
            catalogue = args.catalogue
        entry = load_catalogue(catalogue).get(MODEL)
        source = lines_file(work / "in.jsonl", args.lines, args.max_tokens)
        ours_s, idle, busy = appliance_leg(catalogue, work / "state", source, args.probes, args.concurrency)
        theirs_s = max(1, run_batch_s(entry, source, work))
    ours, theirs = args.lines / ours_s, args.lines / theirs_s
    print(f"batch of {args.lines} chat lines, max_tokens {args.max_tokens}, batch_concurrency_per_model "
          f"{args.concurrency}")
    print(f"  appliance batch : {ours:8.2f} lines/s ({ours_s:.1f} s, submission to completed)")
    print(f"  vllm run-batch  : {theirs:8.2f} lines/s ({theirs_s:.0f} s by its progress bar, load excluded)")
    print(f"  ratio           : {ours / theirs:8.2f}  (aim ≥ 0.9)")
    print(f"live chat p99     : idle {p99(idle) * 1000:.0f} ms ({len(idle)}), during the batch "
          f"{p99(busy) * 1000:.0f} ms ({len(busy)}); ratio {p99(busy) / p99(idle):.2f} (aim ≤ 1.5)")


if __name__ == "__main__":
    main()
