"""Batch throughput through the appliance vs vLLM's own offline ``run-batch``, and live latency under a batch.

* Throughput: chat lines per second of one OpenAI batch (``/oai/v1/files`` +
  ``/oai/v1/batches``, submission to ``completed``) vs ``vllm run-batch`` on the
  same model, options and file, run once before and once after the appliance
  (its own progress bar's rate, model load excluded). Aim: appliance ≥ 0.9 ×
  run-batch.
* Fairness: p50/p99 of sequential live chat requests while that batch runs vs
  on an idle appliance, interleaved: each round probes idle, then runs the
  batch under probes, then runs it alone. Aim: p99 ≤ 1.5 × idle.

    .venv/bin/python bench/batch.py [--lines 600] [--max-tokens 16] [--probes 100] [--rounds 3]
                                    [--concurrency N] [--catalogue models.toml]

Without ``--catalogue`` it uses the tiny vLLM model (``appliance tiny-models``);
without ``--concurrency`` the appliance's default ``batch_concurrency_per_model``.
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
from appliance.config import Settings  # noqa: E402
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


def run_batch_s(entry: object, source: Path, work: Path, lines: int) -> float:
    """Seconds ``vllm run-batch`` spent running the lines: its progress bar's final rate (model load excluded;
    the bar's elapsed time is whole seconds only, so it is the fallback)."""
    options = {k: v for k, v in entry.engine_options.items() if not k.startswith("tool_")}  # type: ignore[attr-defined]
    command = [vllm_python(entry), "-m", "vllm.entrypoints.openai.run_batch",  # type: ignore[arg-type]
               "-i", str(source), "-o", str(work / "out.jsonl"), "--model", str(entry.path),  # type: ignore[attr-defined]
               "--served-model-name", MODEL, *option_flags(options)]
    done = subprocess.run(command, check=True, capture_output=True, text=True, timeout=1800,
                          env={**os.environ, **vllm_environment(entry)})  # type: ignore[arg-type]
    bars = re.findall(r"Running batch: 100% Completed \| \d+/\d+ \[(?:(\d+):)?(\d+):(\d+)<[^,]*, ([\d.]+)req/s",
                      done.stderr)
    if bars and float(bars[-1][3]) > 0:
        return lines / float(bars[-1][3])
    bars = re.findall(r"Running batch: 100% Completed \| \d+/\d+ \[(?:(\d+):)?(\d+):(\d+)<", done.stderr)
    assert bars, done.stderr[-2000:]
    hours, minutes, seconds = bars[-1][:3]
    return max(1, int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds))


def probe_latencies(http: httpx.Client, count: int | None, stop: threading.Event | None = None) -> list[float]:
    """Sequential live chat requests: ``count`` of them, or until ``stop``."""
    took: list[float] = []
    body = {"model": MODEL, "max_tokens": 8, "temperature": 0, "messages": [{"role": "user", "content": "Hi"}]}
    while (count is None or len(took) < count) and not (stop and stop.is_set()):
        started = time.perf_counter()
        assert http.post("/v1/inference/chat", json=body).status_code == 200
        took.append(time.perf_counter() - started)
    return took


def quantile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) >= 2 else values[0]


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


def appliance_leg(catalogue: Path, state: Path, source: Path, probes: int, rounds: int,
                  concurrency: int | None) -> tuple[list[float], list[float], list[float]]:
    """Per round: live probes idle; live probes while the batch runs; the batch alone (its seconds)."""
    env = {"APPLIANCE_BATCH_CONCURRENCY_PER_MODEL": str(concurrency)} if concurrency else {}
    took: list[float] = []
    idle: list[float] = []
    busy: list[float] = []
    with start_appliance(catalogue, state, env=env) as running:
        key = running.create_key()
        with running.client(key, timeout=600) as http, running.client(key, timeout=600) as live:
            probe_latencies(http, 3)  # warm
            file_id = http.post("/oai/v1/files", files={"file": ("in.jsonl", source.read_bytes())},
                                data={"purpose": "batch"}).json()["id"]
            for _ in range(rounds):
                idle += probe_latencies(http, probes)
                stop = threading.Event()
                prober = threading.Thread(target=lambda: busy.extend(probe_latencies(live, None, stop)))
                prober.start()
                run_oai_batch(http, file_id)
                stop.set()
                prober.join(600)
                took.append(run_oai_batch(http, file_id))
    return took, idle, busy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=600)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--probes", type=int, default=100, help="idle probes per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--catalogue", type=Path, default=None)
    parser.add_argument("--concurrency", type=int, default=None, help="batch_concurrency_per_model")
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
        theirs_s = [run_batch_s(entry, source, work, args.lines)]
        took, idle, busy = appliance_leg(catalogue, work / "state", source, args.probes, args.rounds,
                                         args.concurrency)
        theirs_s.append(run_batch_s(entry, source, work, args.lines))
    ours = sorted(args.lines / s for s in took)
    theirs = sorted(args.lines / s for s in theirs_s)
    ratio = statistics.median(ours) / statistics.mean(theirs)
    concurrency = args.concurrency or Settings().batch_concurrency_per_model
    print(f"batch of {args.lines} chat lines, max_tokens {args.max_tokens}, batch_concurrency_per_model "
          f"{concurrency}, {args.rounds} rounds; load average {os.getloadavg()[0]:.1f}")
    print(f"  appliance batch : median {statistics.median(ours):7.1f} lines/s "
          f"(rounds {', '.join(f'{v:.1f}' for v in ours)}; submission to completed)")
    print(f"  vllm run-batch  : mean   {statistics.mean(theirs):7.1f} lines/s "
          f"(before {args.lines / theirs_s[0]:.1f}, after {args.lines / theirs_s[1]:.1f}; load excluded)")
    print(f"  ratio           : {ratio:8.2f}  (aim ≥ 0.9)")
    p99_idle, p99_busy = quantile(idle, 99), quantile(busy, 99)
    print(f"live chat         : idle p50 {quantile(idle, 50) * 1000:.0f} ms p99 {p99_idle * 1000:.0f} ms "
          f"({len(idle)}); during the batch p50 {quantile(busy, 50) * 1000:.0f} ms p99 {p99_busy * 1000:.0f} ms "
          f"({len(busy)}); p99 ratio {p99_busy / p99_idle:.2f} (aim ≤ 1.5)")


if __name__ == "__main__":
    main()
