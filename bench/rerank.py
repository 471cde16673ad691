"""Rerank throughput in query–document pairs per second, side by side in one run.

    .venv/bin/python bench/rerank.py [--model tiny|minilm] [--rounds 3] [--requests 64] [--documents 32]
                                     [--concurrency 8] [--no-infinity] [--no-appliance]

Legs, interleaved round by round with raw ``CrossEncoder.predict`` of the same
model on the same pairs in this process, one call per request (the reference),
between every two of them; each ratio is to its two raw neighbours' mean, so
the machine's drift cancels. Each leg is measured in wall-clock throughput and
in CPU per pair of whoever computed (this process for raw, the server's
process tree otherwise): on a shared, drifting VM the CPU ratio is the steadier.

- ``raw-one-call``: every pair of every request in one ``predict`` call, sorted
  by length across all of them (the least padding): the ceiling;
- ``worker``: the appliance's rerank worker (``python -m appliance.workers.rerank``)
  on its Unix socket, ``--concurrency`` clients each sending requests of one
  query and ``--documents`` documents;
- ``infinity``: Infinity's ``/rerank`` (``infinity_emb v2 --engine torch``, its
  own environment under bench/.peers/, bench/peer_envs.py) with the same
  requests, when it installs and starts (else reported as skipped, with why);
- ``appliance``: through the gateway (``appliance serve``, its own worker of
  the same model and options): ``POST /v1/inference/rerank`` with a key, the
  whole product (authentication, validation, budget check, usage row, the
  envelope), ``--no-appliance`` to leave it out.

``tiny`` is the test model; ``minilm`` is a random-weight cross-encoder of
cross-encoder/ms-marco-MiniLM-L6-v2's shape (6 layers, 384 wide), for the
cost of a real small reranker (no real one installs offline from PyPI).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
import tomli_w

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the appliance's workers run: no spinning between legs

from appliance.catalogue import ModelEntry  # noqa: E402
from appliance.tiny_models import rerank as tiny_rerank  # noqa: E402
from bench.peer_envs import INFINITY, PeerUnavailable, ensure, serve, tree_cpu_seconds  # noqa: E402
from tests.support.appliance import free_port, start_appliance  # noqa: E402
from tests.support.worker import started_worker  # noqa: E402

SLUG = "bench/rerank"
QUIET = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DO_NOT_TRACK": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0"}
WORDS = ("the appliance reranks passages for a quiet office network where every question about invoices contracts "
         "travel schedules support tickets and the capital of france finds the most relevant answer first").split()



class Run(NamedTuple):
    seconds: float  # wall clock, all requests served
    cpu_seconds: float  # of whoever computed: this process for raw, the server's process tree for a server


Leg = Callable[[list[dict[str, Any]]], Run]


def build_model(name: str, work: Path) -> Path:
    path = work / f"rerank-{name}"
    tiny_rerank.build(path, **(tiny_rerank.MINILM_SHAPE if name == "minilm" else {}))
    return path


def passage(i: int, words: int) -> str:
    return " ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(words)) + f" #{i}"


def requests_of(n: int, documents: int) -> list[dict[str, Any]]:
    """``n`` requests of one query and ``documents`` passages of 40–100 words (the size of retrieved chunks)."""
    return [{"model": SLUG, "query": f"which passage answers question {i} about {WORDS[i % len(WORDS)]}?",
             "documents": [passage(i * documents + d, 40 + (i + d) % 61) for d in range(documents)]}
            for i in range(n)]


def pairs_of(requests: list[dict[str, Any]]) -> int:
    return sum(len(r["documents"]) for r in requests)


def raw_leg(model: Any, batch_size: int, one_call: bool = False) -> Leg:
    """``predict`` in this process: one call per request (the reference), or every pair in one call (the ceiling:
    sorted by length across all requests, the least padding)."""
    def run(requests: list[dict[str, Any]]) -> Run:
        calls = [[(r["query"], d) for r in requests for d in r["documents"]]] if one_call else [
            [(r["query"], d) for d in r["documents"]] for r in requests]
        started, cpu = time.perf_counter(), time.process_time()
        for pairs in calls:
            model.predict(pairs, batch_size=batch_size, show_progress_bar=False)
        return Run(time.perf_counter() - started, time.process_time() - cpu)
    return run


def http_leg(target: str, server_pid: int, concurrency: int, connector: Callable[[], aiohttp.BaseConnector],
             headers: dict[str, str] | None = None,
             results: Callable[[Any], list[Any]] = lambda body: body["results"]) -> Leg:
    """``concurrency`` clients POST the requests to ``target`` one at a time each until none is left."""
    async def load(requests: list[dict[str, Any]]) -> Run:
        queue = list(reversed(requests))

        async def client(session: aiohttp.ClientSession) -> None:
            while queue:
                request = queue.pop()
                async with session.post(target, json=request) as response:
                    body = await response.json()
                    assert response.status == 200, body
                    assert len(results(body)) == len(request["documents"]), body

        async with aiohttp.ClientSession(connector=connector(), headers=headers) as session:
            started, cpu = time.perf_counter(), tree_cpu_seconds(server_pid)
            await asyncio.gather(*(client(session) for _ in range(concurrency)))
            return Run(time.perf_counter() - started, tree_cpu_seconds(server_pid) - cpu)

    return lambda requests: asyncio.run(load(requests))


# --- the appliance leg (through the gateway) ----------------------------------------------------------------------
def appliance_leg(entry: ModelEntry, work: Path, concurrency: int, stack: Any) -> Leg:
    """``appliance serve`` with the same model and engine options as the worker leg, its own worker behind the
    gateway; clients POST /v1/inference/rerank with a key over TCP. CPU is the appliance's process tree: gateway,
    worker and all."""
    catalogue = work / "models.toml"
    table = {"slug": entry.slug, "modality": "rerank", "engine": entry.engine, "path": str(entry.path),
             "load": "startup", "engine_options": dict(entry.engine_options)}
    catalogue.write_text(tomli_w.dumps({"model": [table]}))
    running = stack.enter_context(start_appliance(catalogue, work / "appliance", env=QUIET))
    key = running.create_key()
    return http_leg(f"{running.url}/v1/inference/rerank", running.process.pid, concurrency, aiohttp.TCPConnector,
                    headers={"Authorization": f"Bearer {key}"}, results=lambda body: body["data"]["results"])


def infinity_leg(model_path: Path, work: Path, concurrency: int, stack: Any) -> Leg:
    """Infinity serving the same model directory; its /rerank takes the same body (documents as strings)."""
    ensure(INFINITY)
    port = free_port()
    command = [str(INFINITY.binary("infinity_emb")), "v2", "--model-id", str(model_path), "--served-model-name", SLUG,
               "--engine", "torch", "--device", "cpu", "--host", "127.0.0.1", "--port", str(port),
               "--log-level", "warning"]
    server = stack.enter_context(serve(command, f"http://127.0.0.1:{port}/health", work / "infinity.log", env=QUIET))
    return http_leg(f"http://127.0.0.1:{port}/rerank", server.pid, concurrency, aiohttp.TCPConnector)


def uptime() -> str:
    with open("/proc/loadavg") as fh:
        return "load average " + " ".join(fh.read().split()[:3])


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}–{max(values):.3f})"


def main() -> None:
    import contextlib

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["tiny", "minilm"], default="tiny")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--documents", type=int, default=32, help="documents per request")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64, help="pairs per forward pass, raw and worker alike")
    parser.add_argument("--max-wait-ms", type=float, default=0.0, help="the worker's batching wait")
    parser.add_argument("--threads", type=int, default=None, help="the worker's torch threads (default all cores)")
    parser.add_argument("--no-infinity", action="store_true")
    parser.add_argument("--no-appliance", action="store_true", help="leave out the leg through the gateway")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a `timeout` still stops the servers started below

    from sentence_transformers import CrossEncoder

    work = Path(tempfile.mkdtemp(prefix="bench-rerank-"))
    path = build_model(args.model, work)
    entry = ModelEntry(slug=SLUG, modality="rerank", engine="sentence-transformers", path=path, engine_options={
        "max_batch_size": args.batch_size, "max_wait_ms": args.max_wait_ms,
        "max_documents": max(1000, args.documents), **({"threads": args.threads} if args.threads else {})})
    requests = requests_of(args.requests, args.documents)
    with contextlib.ExitStack() as stack:
        worker = stack.enter_context(started_worker("appliance.workers.rerank", entry, work / "worker.log"))
        model = CrossEncoder(str(path), device="cpu", local_files_only=True)
        raw = raw_leg(model, args.batch_size)
        legs: dict[str, Leg] = {
            "raw-one-call": raw_leg(model, args.batch_size, one_call=True),
            "worker": http_leg("http://worker/v1/rerank", worker.process.pid, args.concurrency,
                               lambda: aiohttp.UnixConnector(path=str(worker.socket)))}
        if not args.no_appliance:
            legs["appliance"] = appliance_leg(entry, work, args.concurrency, stack)
        if not args.no_infinity:
            try:
                legs["infinity"] = infinity_leg(path, work, args.concurrency, stack)
            except PeerUnavailable as exc:
                print(f"infinity: skipped: {exc}", flush=True)
        for leg in (raw, *legs.values()):  # warm-up, every side
            leg(requests[: max(2, args.concurrency)])

        pairs = pairs_of(requests)
        print(f"model={args.model} requests={args.requests}×{args.documents} documents ({pairs} pairs) "
              f"concurrency={args.concurrency} batch={args.batch_size} max_wait_ms={args.max_wait_ms} "
              f"threads={args.threads or 'all'} cores={os.cpu_count()} | {uptime()}", flush=True)
        ratios: dict[str, list[float]] = {name: [] for name in legs}
        cpu_ratios: dict[str, list[float]] = {name: [] for name in legs}
        rates: dict[str, list[float]] = {name: [] for name in ("raw", *legs)}
        for round_no in range(1, args.rounds + 1):
            raws = [raw(requests)]
            names = list(legs)
            shift = round_no % len(names)
            line = []
            for name in names[shift:] + names[:shift]:  # who goes first rotates: drift favours no one
                served = legs[name](requests)
                raws.append(raw(requests))
                neighbours = raws[-2:]
                rates[name].append(pairs / served.seconds)
                ratios[name].append(statistics.mean(r.seconds for r in neighbours) / served.seconds)
                cpu_ratios[name].append(statistics.mean(r.cpu_seconds for r in neighbours) / served.cpu_seconds)
                line.append(f"{name} {rates[name][-1]:7.1f} pairs/s ({ratios[name][-1]:.3f}), "
                            f"{served.cpu_seconds / pairs * 1e3:.2f} CPU ms/pair ({cpu_ratios[name][-1]:.3f})")
            rates["raw"].append(pairs / statistics.mean(r.seconds for r in raws))
            raw_cpu = statistics.mean(r.cpu_seconds for r in raws) / pairs * 1e3
            print(f"  round {round_no}: raw per request {rates['raw'][-1]:7.1f} pairs/s, {raw_cpu:.2f} CPU ms/pair | " +
                  " | ".join(line), flush=True)
        print(f"pairs/s, median: raw {statistics.median(rates['raw']):.0f}, " +
              ", ".join(f"{name} {statistics.median(rates[name]):.0f}" for name in legs))
        print("throughput / raw predict per request, median (min–max): " +
              ", ".join(f"{name} {spread(values)}" for name, values in ratios.items()))
        print("CPU efficiency (raw CPU per pair / its CPU per pair), median (min–max): " +
              ", ".join(f"{name} {spread(values)}" for name, values in cpu_ratios.items()))
        for name in ("worker", "appliance"):
            if name in ratios and "infinity" in ratios:
                print(f"{name}/infinity throughput: "
                      f"{spread([w / i for w, i in zip(ratios[name], ratios['infinity'], strict=True)])}")
        print(uptime())


if __name__ == "__main__":
    main()
