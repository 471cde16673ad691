"""What a Responses call adds over the same chat completion, on the same backend, interleaved in one run.

    .venv/bin/python bench/responses.py [--pairs 400] [--tokens 16] [--no-vllm]

Starts `appliance serve` with two chat models: ``bench/instant``, a remote
backend that answers at once (bench/instant_backend.py: the stand-in for a
GPU-speed engine, so the gateway's own cost is all there is to see), and the
tiny vLLM model (CPU build: a real engine, its own noise). Per model,
``--pairs`` sequential pairs, the order alternating within each pair:

- whole answers: ``POST /oai/v1/chat/completions`` vs ``POST /oai/v1/responses``
  (stored, the default, and ``store: false``) of the same prompt and
  ``--tokens`` tokens: the latency of each (p50, p99) and the paired
  difference (p50, p99);
- streamed: chat's first token (its first content chunk) vs the Responses
  stream's first event (``response.created``) and its first text delta.

Prints milliseconds and the ratios first-event / first-token and
first-delta / first-token.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import tomli_w

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.appliance import free_port, start_appliance  # noqa: E402

VLLM = "scailabs/poolnoodle-omni"
INSTANT = "bench/instant"
PROMPT = "Tell me a long story about a little model that lived in a box."


@contextlib.contextmanager
def instant_backend(port: int, log: Path) -> Iterator[str]:
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, str(REPO / "bench" / "instant_backend.py"), str(port), "instant"],
                                   stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError):
                import urllib.request

                urllib.request.urlopen(f"{base}/models", timeout=1).read()  # noqa: S310 (loopback)
                break
            if time.monotonic() > deadline:
                sys.exit("the instant backend did not start")
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(10)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def whole(session: aiohttp.ClientSession, url: str, body: dict[str, object]) -> float:
    started = time.perf_counter()
    async with session.post(url, json=body) as response:
        await response.read()
        assert response.status == 200, await response.text()
    return time.perf_counter() - started


async def chat_first_token(session: aiohttp.ClientSession, url: str, body: dict[str, object]) -> float:
    started, first = time.perf_counter(), 0.0
    async with session.post(url, json=body) as response:
        assert response.status == 200, await response.text()
        async for line in response.content:
            if not first and line.startswith(b"data: {") and b'"content"' in line:
                choices = json.loads(line[6:]).get("choices") or [{}]
                if (choices[0].get("delta") or {}).get("content"):
                    first = time.perf_counter() - started
    return first


async def responses_firsts(session: aiohttp.ClientSession, url: str, body: dict[str, object]) -> tuple[float, float]:
    """Seconds to the first event, and to the first text delta."""
    started, event, delta = time.perf_counter(), 0.0, 0.0
    async with session.post(url, json=body) as response:
        assert response.status == 200, await response.text()
        async for line in response.content:
            if not event and line.startswith(b"event: "):
                event = time.perf_counter() - started
            if not delta and line.startswith(b"event: response.output_text.delta"):
                delta = time.perf_counter() - started
    return event, delta


async def measure(base: str, key: str, model: str, pairs: int, tokens: int) -> dict[str, list[float]]:
    chat_url, responses_url = f"{base}/oai/v1/chat/completions", f"{base}/oai/v1/responses"
    chat = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": tokens, "seed": 1}
    resp = {"model": model, "input": PROMPT, "max_output_tokens": tokens, "seed": 1}
    out: dict[str, list[float]] = {name: [] for name in ("chat", "responses", "responses_unstored", "chat_first_token",
                                                         "first_event", "first_delta")}
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as session:
        for _ in range(20):  # warm-up
            await whole(session, chat_url, chat)
            await whole(session, responses_url, resp)
        for n in range(pairs):
            legs = [("chat", whole(session, chat_url, chat)),
                    ("responses", whole(session, responses_url, resp)),
                    ("responses_unstored", whole(session, responses_url, {**resp, "store": False}))]
            for name, work in (legs if n % 2 == 0 else legs[::-1]):
                out[name].append(await work)
            first_token = chat_first_token(session, chat_url, {**chat, "stream": True})
            firsts = responses_firsts(session, responses_url, {**resp, "stream": True})
            if n % 2 == 0:
                out["chat_first_token"].append(await first_token)
                event, delta = await firsts
            else:
                event, delta = await firsts
                out["chat_first_token"].append(await first_token)
            out["first_event"].append(event)
            out["first_delta"].append(delta)
    return out


def report(model: str, m: dict[str, list[float]]) -> None:
    ms = {name: [v * 1e3 for v in values] for name, values in m.items()}
    print(f"\n{model}: {len(ms['chat'])} pairs")
    for name in ("chat", "responses", "responses_unstored"):
        print(f"  {name:20s} p50 {pct(ms[name], 0.5):7.2f} ms   p99 {pct(ms[name], 0.99):7.2f} ms")
    for name in ("responses", "responses_unstored"):
        added = [r - c for r, c in zip(ms[name], ms["chat"], strict=True)]
        print(f"  added by {name:11s} p50 {pct(added, 0.5):+7.2f} ms   p99 {pct(added, 0.99):+7.2f} ms   "
              f"(p50 difference of the medians {statistics.median(ms[name]) - statistics.median(ms['chat']):+.2f} ms)")
    token, event, delta = (statistics.median(ms[k]) for k in ("chat_first_token", "first_event", "first_delta"))
    print(f"  streamed: chat first token p50 {token:.2f} ms; responses first event p50 {event:.2f} ms "
          f"({event / token:.3f}x), first text delta p50 {delta:.2f} ms ({delta / token:.3f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=400)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--no-vllm", action="store_true", help="only the instant backend")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-responses-"))
    port = free_port()
    with instant_backend(port, work / "instant.log") as backend:
        models: list[dict[str, object]] = [{"slug": INSTANT, "modality": "chat", "engine": "remote", "url": [backend],
                                            "remote_model": "instant"}]
        if not args.no_vllm:
            tiny = REPO / ".cache" / "tiny-models" / "models.toml"
            if not tiny.exists():
                subprocess.run([sys.executable, "-m", "appliance.cli", "tiny-models", str(tiny.parent)], check=True)
            table = next(t for t in tomllib.loads(tiny.read_text())["model"] if t["slug"] == VLLM)
            models.append({**table, "path": str((tiny.parent / table["path"]).resolve()), "load": "startup"})
        catalogue = work / "models.toml"
        catalogue.write_text(tomli_w.dumps({"model": models}))
        with start_appliance(catalogue, work / "state") as running:
            key = running.create_key()
            print(f"appliance {running.url}; instant backend {backend}; {args.pairs} pairs of {args.tokens} tokens")
            for model in [INSTANT] + ([] if args.no_vllm else [VLLM]):
                report(model, asyncio.run(measure(running.url, key, model, args.pairs, args.tokens)))


if __name__ == "__main__":
    main()
