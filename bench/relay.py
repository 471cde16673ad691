"""The relay's own cost per request: gateway and worker CPU, ceiling and added latency, optionally A/B between trees.

    .venv/bin/python bench/relay.py [--rounds 6] [--requests 1500] [TREE ...]
    .venv/bin/python bench/relay.py --chat [--rounds 6] [--streams 8] [--tokens 64] [--repeat 3] [TREE ...]

Serves the tiny embedding model once per TREE (a checkout of this repo, run
through PYTHONPATH; default: this one) and, round by round, alternating the
order: ``--concurrency`` single-text clients through ``POST
/v1/inference/embed`` while the gateway's and the worker's CPU time is read
from /proc (milliseconds per request), the same load straight at the worker's
Unix socket (the ceiling ratio gateway/direct), and sequential small requests
alternating gateway and socket (added latency, paired p50 and p99). Run it
from outside the repo (``cd /tmp``), so ``python -m`` does not put the
current directory ahead of each TREE.

``--chat`` measures the chat path instead, on the tiny vLLM model (one engine
per TREE): the gateway's CPU per streamed chat (``--streams`` at once, each
``--tokens`` chunks, so also per chunk) and per whole chat, through
``/oai/v1/chat/completions`` with logprobs (the frames vLLM writes most into).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import psutil
import tomli_w

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})

from appliance.config import load_settings  # noqa: E402
from appliance.supervisor.local_backend import socket_file  # noqa: E402
from tests.support.appliance import start_appliance  # noqa: E402

SLUG = "bench/embed"
WORKER_MODULE = "appliance.workers.embeddings"


async def load(url: str, requests: int, concurrency: int, headers: dict[str, str] | None = None,
               socket: str | None = None) -> float:
    """Requests/s of ``concurrency`` clients of one short text each."""
    left = requests

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            async with session.post(url, json={"model": SLUG, "input": "hello world"}) as response:
                assert response.status == 200, await response.text()
                await response.read()

    connector = aiohttp.UnixConnector(path=socket, limit=concurrency) if socket else \
        aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        return requests / (time.perf_counter() - started)


async def added_latency(url: str, key: str, socket: str, n: int) -> tuple[float, float]:
    """Milliseconds the gateway adds to a small request: the paired p50, and p99 minus p99."""
    via_gateway, direct = [], []
    body = {"model": SLUG, "input": "hello"}
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as gateway, \
            aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=socket)) as worker:
        for i in range(n + 20):
            for session, target, out in ((gateway, url, via_gateway), (worker, "http://worker/v1/embeddings", direct)):
                started = time.perf_counter()
                async with session.post(target, json=body) as response:
                    await response.read()
                if i >= 20:  # warm-up
                    out.append(time.perf_counter() - started)
    paired = sorted(g - d for g, d in zip(via_gateway, direct, strict=True))

    def p99(values: list[float]) -> float:
        return sorted(values)[int(0.99 * len(values))]

    return paired[len(paired) // 2] * 1e3, (p99(via_gateway) - p99(direct)) * 1e3


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


CHAT_SLUG = "scailabs/poolnoodle-omni"
CHAT_BODY = {"model": CHAT_SLUG, "messages": [{"role": "user", "content": "Tell me a story."}], "ignore_eos": True,
             "logprobs": True, "top_logprobs": 2}


async def chats(url: str, key: str, count: int, tokens: int, stream: bool) -> int:
    """``count`` chats at once of ``tokens`` tokens each; the frames (or answers) received."""
    received = 0

    async def one(session: aiohttp.ClientSession, seed: int) -> None:
        nonlocal received
        body = {**CHAT_BODY, "max_tokens": tokens, "stream": stream, "seed": seed}
        async with session.post(f"{url}/oai/v1/chat/completions", json=body) as response:
            assert response.status == 200, await response.text()
            if not stream:
                await response.read()
                received += 1
                return
            async for line in response.content:
                received += line.startswith(b"data: {")

    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as session:
        await asyncio.gather(*(one(session, seed) for seed in range(count)))
    return received


def chat_main(args: argparse.Namespace) -> None:
    from appliance.tiny_models.chat import TINY as TINY_CHAT

    work = Path(tempfile.mkdtemp(prefix="bench-relay-chat-"))
    TINY_CHAT.build(work / TINY_CHAT.name)
    table = next(t for t in TINY_CHAT.catalogue(work / TINY_CHAT.name) if t["engine"] == "vllm")
    columns = ("stream ms", "chunk ms", "whole ms")
    results: dict[Path, dict[str, list[float]]] = {tree: {c: [] for c in columns} for tree in args.trees}
    with contextlib.ExitStack() as stack:
        subjects = {}
        for index, tree in enumerate(args.trees):
            catalogue = work / f"models-{index}.toml"
            catalogue.write_text(tomli_w.dumps({"model": [{**table, "load": "startup"}]}))
            env = {"PYTHONPATH": str(tree.resolve()), "APPLIANCE_VLLM_PYTHON": str(REPO / ".venv-vllm/bin/python")}
            running = stack.enter_context(start_appliance(catalogue, work / f"state-{index}", wait=False, env=env))
            running.wait_ready(600)
            key = running.create_key()
            asyncio.run(chats(running.url, key, args.streams, 8, stream=True))  # warm-up
            subjects[tree] = (running.url, key, psutil.Process(running.process.pid))
        print(f"streams={args.streams} tokens={args.tokens} cores={os.cpu_count()} load={os.getloadavg()[0]:.2f}")
        for round_no in range(args.rounds):
            for tree in args.trees if round_no % 2 == 0 else list(reversed(args.trees)):
                url, key, gateway = subjects[tree]
                before = cpu_seconds(gateway)  # /proc counts in ticks of 10 ms: enough work to make them small
                frames = sum(asyncio.run(chats(url, key, args.streams, args.tokens, stream=True))
                             for _ in range(args.repeat))
                streamed = cpu_seconds(gateway) - before
                before = cpu_seconds(gateway)
                for _ in range(args.repeat * 4):
                    asyncio.run(chats(url, key, args.streams, args.tokens, stream=False))
                whole = cpu_seconds(gateway) - before
                count = args.streams * args.repeat
                row = dict(zip(columns, (streamed / count * 1e3, streamed / frames * 1e3, whole / count / 4 * 1e3),
                               strict=True))
                for column, value in row.items():
                    results[tree][column].append(value)
                print(f"round {round_no + 1} {tree}: " + " | ".join(f"{c} {v:.3f}" for c, v in row.items()),
                      flush=True)
    print(f"gateway CPU, medians (min-max), load {os.getloadavg()[0]:.2f}:")
    for tree, values in results.items():
        print(f"{tree}: " + " | ".join(f"{c} {statistics.median(v):.3f} ({min(v):.3f}-{max(v):.3f})"
                                      for c, v in values.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trees", nargs="*", type=Path, default=[REPO])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency-requests", type=int, default=200)
    parser.add_argument("--chat", action="store_true", help="the chat path (tiny vLLM) instead of embeddings")
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3, help="--chat: the streams (and 4x the whole chats) per round")
    args = parser.parse_args()
    if args.chat:
        chat_main(args)
        return

    from appliance.tiny_models.embeddings import TINY

    work = Path(tempfile.mkdtemp(prefix="bench-relay-"))
    TINY.build(work / TINY.name)
    columns = ("gateway CPU ms", "worker CPU ms", "req/s", "ceiling", "added p50 ms", "added p99 ms")
    results: dict[Path, dict[str, list[float]]] = {tree: {c: [] for c in columns} for tree in args.trees}
    with contextlib.ExitStack() as stack:
        subjects = {}
        for index, tree in enumerate(args.trees):
            catalogue = work / f"models-{index}.toml"
            catalogue.write_text(tomli_w.dumps({"model": [{
                "slug": SLUG, "modality": "embedding", "engine": "sentence-transformers", "path": str(work / TINY.name),
                "load": "startup", "engine_options": {"max_batch_size": 64}}]}))
            state = work / f"state-{index}"
            running = stack.enter_context(start_appliance(catalogue, state, env={"PYTHONPATH": str(tree.resolve())}))
            key = running.create_key()
            gateway = psutil.Process(running.process.pid)
            worker = next(p for p in gateway.children(recursive=True)
                          if WORKER_MODULE in p.cmdline() and "appliance.supervisor.reaper" not in p.cmdline())
            socket = str(load_settings(None, state_dir=state).socket_dir / socket_file(SLUG))
            url = f"{running.url}/v1/inference/embed"
            asyncio.run(load(url, 300, args.concurrency, {"Authorization": f"Bearer {key}"}))  # warm-up
            subjects[tree] = (url, key, gateway, worker, socket)
        print(f"requests={args.requests} concurrency={args.concurrency} cores={os.cpu_count()} "
              f"load={os.getloadavg()[0]:.2f}")
        for round_no in range(args.rounds):
            for tree in args.trees if round_no % 2 == 0 else list(reversed(args.trees)):
                url, key, gateway, worker, socket = subjects[tree]
                gateway_before, worker_before = cpu_seconds(gateway), cpu_seconds(worker)
                rate = asyncio.run(load(url, args.requests, args.concurrency, {"Authorization": f"Bearer {key}"}))
                gateway_ms = (cpu_seconds(gateway) - gateway_before) / args.requests * 1e3
                worker_ms = (cpu_seconds(worker) - worker_before) / args.requests * 1e3
                direct = asyncio.run(load("http://worker/v1/embeddings", args.requests, args.concurrency,
                                          socket=socket))
                p50, p99 = asyncio.run(added_latency(url, key, socket, args.latency_requests))
                row = dict(zip(columns, (gateway_ms, worker_ms, rate, rate / direct, p50, p99), strict=True))
                for column, value in row.items():
                    results[tree][column].append(value)
                print(f"round {round_no + 1} {tree}: " + " | ".join(f"{c} {v:.3f}" for c, v in row.items()), flush=True)
    print(f"medians (min-max), load {os.getloadavg()[0]:.2f}:")
    for tree, values in results.items():
        print(f"{tree}: " + " | ".join(f"{c} {statistics.median(v):.3f} ({min(v):.3f}-{max(v):.3f})"
                                      for c, v in values.items()))


if __name__ == "__main__":
    main()
