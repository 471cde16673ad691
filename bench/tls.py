"""What HTTPS costs the gateway: the same appliance on plain HTTP and on HTTPS, side by side in one run.

    .venv/bin/python bench/tls.py [--rounds 5] [--requests 2000] [--concurrency 32] [--fresh 300]

Two appliances serve a catalogue with nothing to start (one remote model), one
plain, one with the certificate `appliance tls init` makes (ECDSA P-256).
Round by round, alternating which goes first: ``--requests`` GET /v1/models on
``--concurrency`` kept-alive connections (the steady state of an SDK client), and
``--fresh`` requests each on a new connection (a handshake per request: the
worst case). Prints req/s per leg and the ratio HTTPS/HTTP per round, then medians.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from appliance.tls.lifecycle import init  # noqa: E402
from appliance.tls.store import TlsPaths  # noqa: E402
from tests.support.appliance import RunningAppliance, start_appliance  # noqa: E402
from tests.support.https import start_https_appliance  # noqa: E402
from tests.tls.conftest import remote_only_catalogue  # noqa: E402


async def leg(url: str, key: str, context: ssl.SSLContext | None, requests: int, concurrency: int,
              fresh: bool) -> float:
    """Requests per second for ``requests`` GETs, on kept-alive connections or a new one each."""
    connector = aiohttp.TCPConnector(limit=concurrency, ssl=context if context else False, force_close=fresh)
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        remaining = requests

        async def client() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                async with session.get(f"{url}/v1/models") as response:
                    assert response.status == 200, await response.text()
                    await response.read()

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return requests / (time.perf_counter() - started)


@contextlib.contextmanager
def appliances(work: Path) -> Iterator[tuple[RunningAppliance, RunningAppliance, ssl.SSLContext]]:
    catalogue = remote_only_catalogue(work / "models.toml")
    init(TlsPaths.of(work / "tls"), ["localhost", "127.0.0.1"])
    with start_appliance(catalogue, work / "plain") as plain, \
            start_https_appliance(catalogue, work / "https", work / "tls") as https:
        yield plain, https, https.ssl_context()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--fresh", type=int, default=300)
    args = parser.parse_args()
    ratios: dict[str, list[float]] = {"kept-alive": [], "new connection": []}
    with tempfile.TemporaryDirectory() as scratch, appliances(Path(scratch)) as (plain, https, context):
        keys = (plain.create_key(), https.create_key())
        for round_number in range(args.rounds):
            for name, count, fresh in (("kept-alive", args.requests, False), ("new connection", args.fresh, True)):
                order = [(plain, keys[0], None), (https, keys[1], context)]
                if round_number % 2:
                    order.reverse()
                rates = {}
                for running, key, tls in order:
                    rates[tls is not None] = asyncio.run(leg(running.url, key, tls, count, args.concurrency, fresh))
                ratio = rates[True] / rates[False]
                ratios[name].append(ratio)
                print(f"round {round_number + 1} {name:>15}: http {rates[False]:7.0f} req/s, "
                      f"https {rates[True]:7.0f} req/s, https/http {ratio:.2f}", flush=True)
    for name, values in ratios.items():
        print(f"median https/http, {name}: {statistics.median(values):.2f} "
              f"(min {min(values):.2f}, max {max(values):.2f})")


if __name__ == "__main__":
    main()
