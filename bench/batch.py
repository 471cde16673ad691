"""Batch throughput through the appliance vs vLLM's own offline ``run-batch``, and live latency under a batch.

* Throughput: chat lines per second of one OpenAI batch (``/oai/v1/files`` +
  ``/oai/v1/batches``, submission to ``completed``) vs ``vllm run-batch`` on the
  same model, options and file, run once before and once after the appliance
  (its own progress bar's rate, model load excluded). Aim: appliance ≥ 0.9 ×
  run-batch.
* The relay's share: the same lines posted straight to the appliance's own
  vLLM server (its Unix socket, as many in flight as the batch runs), by a
  lean aiohttp client: what any HTTP relay to vLLM's server could reach on
  this box, so appliance / direct is what the gateway itself costs.
* Fairness: p50/p99 of sequential live chat requests with that batch submitted
  vs on an idle appliance, interleaved: each round probes idle, submits the
  batch and probes while it is there (printing how many of its lines finished
  meanwhile: it yields to live traffic), lets it finish, waits out the yield
  (``batch_yield_s``) and then times the batch alone. Aim: p99 ≤ 1.5 × idle.

    .venv/bin/python bench/batch.py [--lines 600] [--max-tokens 16] [--probes 100] [--rounds 3]
                                    [--busy-probes 300] [--concurrency N] [--while-live N]
                                    [--catalogue models.toml]

Without ``--catalogue`` it uses the tiny vLLM model (``appliance tiny-models``);
without ``--concurrency`` the appliance's default ``batch_concurrency_per_model``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from appliance.catalogue import load_catalogue  # noqa: E402
from appliance.config import Settings  # noqa: E402
from appliance.supervisor.vllm_launch import option_flags, vllm_environment, vllm_python  # noqa: E402
from appliance.supervisor.local_backend import socket_file  # noqa: E402
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


def direct_http_s(socket_path: Path, source: Path, concurrency: int) -> float:
    """Seconds to post every line of ``source`` to vLLM's server on ``socket_path``, ``concurrency`` at once."""
    bodies = [json.dumps(json.loads(line)["body"]).encode() for line in source.open()]  # they name MODEL

    async def run() -> float:
        async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(socket_path), limit=0)) as http:
            pending = iter(bodies)

            async def worker() -> None:
                for body in pending:
                    async with http.post("http://vllm/v1/chat/completions", data=body,
                                         headers={"content-type": "application/json"}) as answer:
                        assert answer.status == 200, await answer.text()
                        await answer.read()

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return time.perf_counter() - started

    return asyncio.run(run())


def probe_latencies(http: httpx.Client, count: int) -> list[float]:
    """``count`` sequential live chat requests."""
    took: list[float] = []
    body = {"model": MODEL, "max_tokens": 8, "temperature": 0, "messages": [{"role": "user", "content": "Hi"}]}
    for _ in range(count):
        started = time.perf_counter()
        assert http.post("/v1/inference/chat", json=body).status_code == 200
        took.append(time.perf_counter() - started)
    return took


def quantile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) >= 2 else values[0]


def submit(http: httpx.Client, file_id: str) -> str:
    batch = http.post("/oai/v1/batches", json={"input_file_id": file_id, "endpoint": "/v1/chat/completions",
                                               "completion_window": "24h"}).json()
    return str(batch["id"])


def wait_done(http: httpx.Client, batch_id: str) -> dict[str, Any]:
    while True:
        batch: dict[str, Any] = http.get(f"/oai/v1/batches/{batch_id}").json()
        if batch["status"] in ("completed", "failed", "expired", "cancelled"):
            assert batch["status"] == "completed" and batch["request_counts"]["failed"] == 0, batch
            return batch
        time.sleep(0.1)


def appliance_leg(catalogue: Path, state: Path, source: Path, probes: int, busy_probes: int, rounds: int,
                  env: dict[str, str]) -> tuple[list[float], list[float], list[float], list[float], list[int]]:
    """Per round: live probes idle; ``busy_probes`` live probes with a batch submitted (and the lines it
    finished meanwhile); once it is done and the yield is over, the batch alone (its seconds); then the same
    lines straight to the appliance's vLLM server (its seconds)."""
    took: list[float] = []
    direct: list[float] = []
    concurrency = int(env.get("APPLIANCE_BATCH_CONCURRENCY_PER_MODEL", Settings().batch_concurrency_per_model))
    idle: list[float] = []
    busy: list[float] = []
    finished_under_probes: list[int] = []
    yield_s = float(env.get("APPLIANCE_BATCH_YIELD_S", Settings().batch_yield_s))
    with start_appliance(catalogue, state, env=env) as running:
        key = running.create_key()
        with running.client(key, timeout=600) as http:
            probe_latencies(http, 3)  # warm
            file_id = http.post("/oai/v1/files", files={"file": ("in.jsonl", source.read_bytes())},
                                data={"purpose": "batch"}).json()["id"]
            for _ in range(rounds):
                idle += probe_latencies(http, probes)
                batch_id = submit(http, file_id)
                busy += probe_latencies(http, busy_probes)
                batch = http.get(f"/oai/v1/batches/{batch_id}").json()
                finished_under_probes.append(batch["request_counts"]["completed"])
                wait_done(http, batch_id)
                time.sleep(yield_s + 0.5)  # the runner yields this long after the last live request
                started = time.perf_counter()
                wait_done(http, submit(http, file_id))
                took.append(time.perf_counter() - started)
                direct.append(direct_http_s(state / "sockets" / socket_file(MODEL), source, concurrency))
    return took, direct, idle, busy, finished_under_probes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=600)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--probes", type=int, default=100, help="idle probes per round")
    parser.add_argument("--busy-probes", type=int, default=300, help="probes per round with a batch submitted")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--catalogue", type=Path, default=None)
    parser.add_argument("--concurrency", type=int, default=None, help="batch_concurrency_per_model")
    parser.add_argument("--while-live", type=int, default=None, help="batch_concurrency_while_live")
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
        env = {"APPLIANCE_BATCH_CONCURRENCY_PER_MODEL": str(args.concurrency)} if args.concurrency else {}
        if args.while_live is not None:
            env["APPLIANCE_BATCH_CONCURRENCY_WHILE_LIVE"] = str(args.while_live)
        took, direct_s, idle, busy, finished = appliance_leg(catalogue, work / "state", source, args.probes,
                                                   args.busy_probes, args.rounds, env)
        theirs_s.append(run_batch_s(entry, source, work, args.lines))
    ours = sorted(args.lines / s for s in took)
    direct = sorted(args.lines / s for s in direct_s)
    theirs = sorted(args.lines / s for s in theirs_s)
    ratio = statistics.median(ours) / statistics.mean(theirs)
    defaults = Settings()
    concurrency = args.concurrency or defaults.batch_concurrency_per_model
    while_live = defaults.batch_concurrency_while_live if args.while_live is None else args.while_live
    print(f"batch of {args.lines} chat lines, max_tokens {args.max_tokens}, batch_concurrency_per_model "
          f"{concurrency}, batch_concurrency_while_live {while_live}, {args.rounds} rounds; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"  appliance batch : median {statistics.median(ours):7.1f} lines/s "
          f"(rounds {', '.join(f'{v:.1f}' for v in ours)}; submission to completed)")
    print(f"  under live load : {', '.join(str(n) for n in finished)} of {args.lines} lines finished during "
          f"the {args.busy_probes} live probes of each round (the batch yields to them)")
    print(f"  vllm run-batch  : mean   {statistics.mean(theirs):7.1f} lines/s "
          f"(before {args.lines / theirs_s[0]:.1f}, after {args.lines / theirs_s[1]:.1f}; load excluded)")
    print(f"  ratio           : {ratio:8.2f}  (aim ≥ 0.9)")
    print(f"  vllm server     : median {statistics.median(direct):7.1f} lines/s (rounds "
          f"{', '.join(f'{v:.1f}' for v in direct)}; straight to its socket, {concurrency} in flight): the "
          f"appliance reaches {statistics.median(ours) / statistics.median(direct):.2f} of it, it "
          f"{statistics.median(direct) / statistics.mean(theirs):.2f} of run-batch")
    p99_idle, p99_busy = quantile(idle, 99), quantile(busy, 99)
    print(f"live chat         : idle p50 {quantile(idle, 50) * 1000:.0f} ms p99 {p99_idle * 1000:.0f} ms "
          f"({len(idle)}); during the batch p50 {quantile(busy, 50) * 1000:.0f} ms p99 {p99_busy * 1000:.0f} ms "
          f"({len(busy)}, a batch submitted); p99 ratio {p99_busy / p99_idle:.2f} (aim ≤ 1.5)")


if __name__ == "__main__":
    main()
