"""Fair share under contention: a quiet tenant's latency while another tenant floods the model, fair share on vs off.

    .venv/bin/python bench/fairness.py [--seqs 8] [--flood 4] [--probes 40] [--tokens 48] [--rounds 1] [--window 20]
                                       [--embed]

Starts `appliance serve` twice on the tiny chat model on vLLM (CPU build) with
``max_num_seqs = --seqs``: once with fair share (the default), once with
``fair_share = false`` (every call straight into vLLM's first-come-first-served
queue), alternating which goes first. In each: two tenants, each with a key of
its own user; the quiet tenant's time to first token, one request at a time
(``--probes`` of them), idle and while the noisy tenant holds ``--flood`` ×
``--seqs`` streams of ``--tokens`` tokens open; and the box's total streamed
tokens/s (both tenants', counted as they arrive) meanwhile, over at least
``--window`` seconds. Prints quiet p50 / p99 under the flood vs
idle, and the throughput with fair share vs without.

``--embed`` measures the embeddings model the same way: the quiet tenant's
single-text requests while the noisy tenant keeps ``--flood`` requests of 256
texts each in flight; without fair share its worker also batches in arrival
order (``batch_order = "arrival"``), as before fair share.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import aiohttp
import tomli_w

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})

from tests.support.appliance import RunningAppliance, cli, start_appliance  # noqa: E402

CHAT = "scailabs/tiny-chat-vllm"
EMBED = "openai/text-embedding-3-small"
ADMIN = ["models:list", "models:use", "api_keys:manage", "admin:access"]


def catalogue(tiny: Path, target: Path, seqs: int, fair: bool) -> Path:
    tables = {t["slug"]: t for t in tomllib.loads((tiny / "models.toml").read_text())["model"]}
    models = [{**tables[slug], "path": str((tiny / tables[slug]["path"]).resolve()), "load": "startup"}
              for slug in (CHAT, EMBED)]
    models[0]["engine_options"] = {**models[0].get("engine_options", {}), "max_num_seqs": seqs}
    if not fair:  # first come, first served in the embeddings worker's batches too
        models[1]["engine_options"] = {**models[1].get("engine_options", {}), "batch_order": "arrival"}
    target.write_text(tomli_w.dumps({"model": models}))
    return target


async def tenants(appliance: RunningAppliance) -> dict[str, str]:
    """A key of a user of each of two tenants, "noisy" and "quiet"."""
    admin = appliance.create_key(*[a for p in ADMIN for a in ("-p", p)])
    keys = {}
    async with aiohttp.ClientSession(appliance.url, headers={"Authorization": f"Bearer {admin}"}) as http:
        for name in ("noisy", "quiet"):
            async with http.post("/v1/tenants", json={"name": name}) as made:
                tenant = (await made.json())["data"]["id"]
            async with http.post("/v1/users", json={"email": f"{name}@example.com", "tenant_id": tenant}) as made:
                user = (await made.json())["data"]["id"]
            async with http.post("/v1/api-keys", json={"name": name, "assigned_user_id": user}) as made:
                keys[name] = (await made.json())["data"]["key"]
    return keys


class Tally:
    """Units (streamed chunks, embedded texts) counted as they arrive, both tenants together."""

    count = 0


async def stream(http: aiohttp.ClientSession, tokens: int, tally: type[Tally] = Tally) -> tuple[float, int]:
    """Seconds to the first content chunk, and the chunks of one streamed chat."""
    body = {"model": CHAT, "messages": [{"role": "user", "content": "hi"}], "max_tokens": tokens,
            "ignore_eos": True, "stream": True}
    started, first, chunks = time.perf_counter(), 0.0, 0
    async with http.post("/v1/inference/chat", json=body) as answer:
        assert answer.status == 200, await answer.text()
        async for line in answer.content:
            if line.startswith(b"data: {") and b'"content":"' in line:
                if not chunks:
                    first = time.perf_counter() - started
                chunks += 1
                tally.count += 1
    return first, chunks


async def embed(http: aiohttp.ClientSession, texts: list[str]) -> tuple[float, int]:
    started = time.perf_counter()
    async with http.post("/v1/inference/embed", json={"model": EMBED, "input": texts}) as answer:
        assert answer.status == 200, await answer.text()
        await answer.read()
    Tally.count += len(texts)
    return time.perf_counter() - started, len(texts)


async def probe(url: str, key: str, probes: int, args: argparse.Namespace) -> list[float]:
    """The quiet tenant's latencies (first token, or whole embed), one request at a time."""
    out = []
    async with aiohttp.ClientSession(url, headers={"Authorization": f"Bearer {key}"}) as http:
        for _ in range(probes):
            first, _units = await (embed(http, ["one text"]) if args.embed else stream(http, 8))
            out.append(first * 1000)
    return out


async def flooded(url: str, keys: dict[str, str], args: argparse.Namespace) -> tuple[list[float], float]:
    """Quiet latencies while the noisy tenant floods; and both tenants' units per second meanwhile (over the
    probes, and at least ``--window`` seconds)."""
    stop = asyncio.Event()

    async def flood() -> None:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(url, headers={"Authorization": f"Bearer {keys['noisy']}"},
                                         connector=connector) as http:
            while not stop.is_set():
                await (embed(http, ["noisy words of a batch"] * 256) if args.embed else stream(http, args.tokens))

    width = args.flood * (1 if args.embed else args.seqs)
    floods = [asyncio.ensure_future(flood()) for _ in range(width)]
    await asyncio.sleep(3.0)  # the flood fills the model
    started, before = time.perf_counter(), Tally.count
    quiet = await probe(url, keys["quiet"], args.probes, args)
    await asyncio.sleep(max(0.0, args.window - (time.perf_counter() - started)))
    rate = (Tally.count - before) / (time.perf_counter() - started)
    stop.set()
    await asyncio.gather(*floods)
    return quiet, rate


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def measure(tiny: Path, fair: bool, args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as scratch:
        state = Path(scratch) / "state"
        state.mkdir()
        env = {"APPLIANCE_FAIR_SHARE": "true" if fair else "false"}
        with start_appliance(catalogue(tiny, state / "models.toml", args.seqs, fair), state, env=env) as appliance:
            keys = await tenants(appliance)
            idle = await probe(appliance.url, keys["quiet"], args.probes, args)
            busy, rate = await flooded(appliance.url, keys, args)
    return {"idle p50": pct(idle, 0.5), "idle p99": pct(idle, 0.99), "flood p50": pct(busy, 0.5),
            "flood p99": pct(busy, 0.99), "units/s": rate}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seqs", type=int, default=8, help="vLLM's max_num_seqs")
    parser.add_argument("--flood", type=int, default=4, help="the noisy tenant's streams, in multiples of --seqs")
    parser.add_argument("--probes", type=int, default=40)
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--window", type=float, default=20.0, help="seconds the throughput is measured over, at least")
    parser.add_argument("--embed", action="store_true")
    args = parser.parse_args()
    tiny = REPO / ".cache" / "tiny-models"
    assert cli("tiny-models", str(tiny), state_dir=tiny, timeout=900).returncode == 0
    what = "embed latency" if args.embed else "time to first token"
    print(f"quiet tenant's {what} (ms) and the box's {'texts' if args.embed else 'tokens'}/s; "
          f"max_num_seqs={args.seqs} flood={args.flood}x probes={args.probes} cores={os.cpu_count()}", flush=True)
    results: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    for round_no in range(args.rounds):
        for fair in ((True, False) if round_no % 2 == 0 else (False, True)):
            row = await measure(tiny, fair, args)
            results[fair].append(row)
            print(f"round {round_no + 1} fair share {'on ' if fair else 'off'}: "
                  + " | ".join(f"{name} {value:.1f}" for name, value in row.items()), flush=True)
    for fair in (True, False):
        rows = results[fair]
        med = {name: statistics.median(r[name] for r in rows) for name in rows[0]}
        print(f"fair share {'on ' if fair else 'off'}: quiet p50 {med['flood p50'] / med['idle p50']:.2f}x idle, "
              f"p99 {med['flood p99'] / med['idle p99']:.2f}x idle ({med['idle p99']:.1f} → {med['flood p99']:.1f} ms)")
    on = statistics.median(r["units/s"] for r in results[True])
    off = statistics.median(r["units/s"] for r in results[False])
    print(f"total throughput during the flood, fair share / first come first served: {on / off:.2f} "
          f"({on:.1f} vs {off:.1f}); load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
