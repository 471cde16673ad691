"""The gateway's own floor: ``GET /v1/models`` vs a bare FastAPI hello-world, side by side in one run.

    .venv/bin/python bench/gateway.py [--rounds 5] [--requests 3000] [--concurrency 32] [--models 6]

Both servers run under the same uvicorn (the loop and HTTP parser the
appliance uses), each in its own process; round by round, alternating which
goes first, ``--concurrency`` aiohttp clients send ``--requests`` requests to
each. Prints req/s, the server's CPU per request (from /proc) and the ratio
appliance/hello-world per round, then medians with their spread. The
appliance serves ``--models`` catalogue entries, none loaded (no engine runs).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import aiohttp
import psutil
import tomli_w

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.appliance import free_port, start_appliance  # noqa: E402

HELLO_APP = textwrap.dedent("""
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"message": "hello world"}
""")


def wait_for_port(port: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    sys.exit(f"the hello-world server did not listen on port {port} within {timeout_s:.0f} s")


async def hammer(url: str, requests: int, concurrency: int, headers: dict[str, str]) -> float:
    """Requests/s of ``concurrency`` clients sharing ``requests`` GETs of ``url``."""
    left = requests

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            async with session.get(url) as response:
                assert response.status == 200, await response.text()
                await response.read()

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency), headers=headers) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        return requests / (time.perf_counter() - started)


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def measure(url: str, process: psutil.Process, args: argparse.Namespace, headers: dict[str, str]) -> tuple[float, float]:
    """req/s and the server's CPU milliseconds per request."""
    before = cpu_seconds(process)
    rate = asyncio.run(hammer(url, args.requests, args.concurrency, headers))
    return rate, (cpu_seconds(process) - before) / args.requests * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--models", type=int, default=6)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    (work / "model").mkdir()
    (work / "hello_app.py").write_text(HELLO_APP)
    catalogue = work / "models.toml"
    catalogue.write_text(tomli_w.dumps({"model": [
        {"slug": f"bench/model-{i}", "modality": "embedding", "engine": "sentence-transformers",
         "path": str(work / "model"), "load": "on-demand"} for i in range(args.models)]}))
    port = free_port()
    hello = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "hello_app:app", "--host", "127.0.0.1", "--port", str(port),
         "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"], cwd=work)
    try:
        wait_for_port(port)
        with start_appliance(catalogue, work / "state") as running:
            key = running.create_key()
            subjects = {
                "hello-world": (f"http://127.0.0.1:{port}/hello", psutil.Process(hello.pid), {}),
                "/v1/models": (f"{running.url}/v1/models", psutil.Process(running.process.pid),
                               {"Authorization": f"Bearer {key}"}),
            }
            for url, process, headers in subjects.values():  # warm-up
                asyncio.run(hammer(url, 300, args.concurrency, headers))
            print(f"requests={args.requests} concurrency={args.concurrency} models={args.models} "
                  f"cores={os.cpu_count()} load={os.getloadavg()[0]:.2f}")
            ratios: list[float] = []
            results: dict[str, list[tuple[float, float]]] = {name: [] for name in subjects}
            for round_no in range(1, args.rounds + 1):
                order = list(subjects) if round_no % 2 else list(reversed(subjects))
                for name in order:
                    url, process, headers = subjects[name]
                    results[name].append(measure(url, process, args, headers))
                (models_rate, models_cpu), (hello_rate, hello_cpu) = results["/v1/models"][-1], results["hello-world"][-1]
                ratios.append(models_rate / hello_rate)
                print(f"round {round_no}: hello-world {hello_rate:7.0f} req/s ({hello_cpu:.3f} ms CPU/req) | "
                      f"/v1/models {models_rate:7.0f} req/s ({models_cpu:.3f} ms CPU/req) | ratio {ratios[-1]:.3f}")
            for name, rows in results.items():
                print(f"{name}: median {statistics.median(r for r, _ in rows):.0f} req/s, "
                      f"{statistics.median(c for _, c in rows):.3f} ms CPU/req")
            print(f"ratio /v1/models / hello-world: median {statistics.median(ratios):.3f} "
                  f"(min {min(ratios):.3f}, max {max(ratios):.3f}); load {os.getloadavg()[0]:.2f}")
    finally:
        hello.terminate()
        hello.wait(10)


if __name__ == "__main__":
    main()
