"""The tiny omni model on vLLM (CPU build): build time, start-up, memory, and the latency of media parts.

    .venv/bin/python bench/multimodal.py [--rounds 5] [--starts 2]

Builds the tiny omni model (appliance/tiny_models/omni.py) into a temporary
directory, then ``--starts`` times, alternating with the text-only tiny model
on vLLM for comparison, starts vLLM the way the supervisor does (its launcher,
a Unix socket) and times it to a healthy ``/health``. On the last omni server
it sends ``--rounds`` rounds of chats straight to vLLM, the kinds interleaved
within each round: text only, a 64×64 and a 512×512 PNG (``data:`` URL), 1 s
and 5 s of 16 kHz WAV (``input_audio``), and a 512×512 PNG with 5 s of audio.
Every request carries a different image or sound (vLLM caches the processed
inputs of one it has seen). Prints the median latency with its range, the
prompt tokens vLLM counted, and the resident memory of vLLM's processes.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})

from appliance.catalogue import ModelEntry  # noqa: E402
from appliance.supervisor.launch import worker_command, worker_environment  # noqa: E402
from appliance.tiny_models import chat, omni  # noqa: E402

QUESTION = {"type": "text", "text": "What is in this?"}


def png(width: int, height: int, seed: int) -> dict[str, Any]:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return {"type": "image_url",
            "image_url": {"url": "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()}}


def wav(seconds: float, seed: int) -> dict[str, Any]:
    t = np.arange(int(seconds * 16000)) / 16000
    tone = 0.3 * np.sin(2 * np.pi * (200 + seed) * t)
    out = io.BytesIO()
    with wave.open(out, "wb") as sound:
        sound.setnchannels(1)
        sound.setsampwidth(2)
        sound.setframerate(16000)
        sound.writeframes((tone * 32767).astype("<i2").tobytes())
    data = base64.b64encode(out.getvalue()).decode()
    return {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}}


KINDS: dict[str, Callable[[int], list[dict[str, Any]]]] = {
    "text only": lambda seed: [],
    "png 64x64": lambda seed: [png(64, 64, seed)],
    "png 512x512": lambda seed: [png(512, 512, seed)],
    "wav 1 s": lambda seed: [wav(1, seed)],
    "wav 5 s": lambda seed: [wav(5, seed)],
    "png 512x512 + wav 5 s": lambda seed: [png(512, 512, seed), wav(5, seed)],
}


def start(entry: ModelEntry, work: Path) -> tuple[subprocess.Popen[bytes], httpx.Client, float]:
    socket = work / f"{entry.slug.replace('/', '_')}.sock"
    socket.unlink(missing_ok=True)
    log = (work / f"{entry.slug.replace('/', '_')}.log").open("wb")
    started = time.perf_counter()
    process = subprocess.Popen(worker_command(entry, socket), stdout=log, stderr=subprocess.STDOUT,
                               env=worker_environment(entry), start_new_session=True)
    client = httpx.Client(transport=httpx.HTTPTransport(uds=str(socket)), base_url="http://vllm", timeout=300)
    while True:
        if process.poll() is not None:
            raise SystemExit(f"vLLM exited; see {log.name}")
        try:
            if socket.exists() and client.get("/health", timeout=2).status_code == 200:
                return process, client, time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.2)


def stop(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(30)


def memory_mb(process: subprocess.Popen[bytes]) -> str:
    """PSS summed over vLLM's processes (shared pages counted once), and the largest RSS among them."""
    root = psutil.Process(process.pid)
    tree = [root, *root.children(recursive=True)]
    pss = sum(p.memory_full_info().pss for p in tree) / 2**20
    largest = max(p.memory_info().rss for p in tree) / 2**20
    return f"PSS {pss:.0f} MB over {len(tree)} processes (largest RSS {largest:.0f} MB)"


def ask(client: httpx.Client, slug: str, parts: list[dict[str, Any]]) -> tuple[float, int]:
    body = {"model": slug, "messages": [{"role": "user", "content": [*parts, QUESTION]}], "max_tokens": 8,
            "temperature": 0}
    started = time.perf_counter()
    response = client.post("/v1/chat/completions", json=body)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text
    return elapsed, response.json()["usage"]["prompt_tokens"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--starts", type=int, default=2)
    args = parser.parse_args()
    print(f"cores={os.cpu_count()} load average {os.getloadavg()[0]:.1f}")
    work = Path(tempfile.mkdtemp(prefix="bench-multimodal-"))

    started = time.perf_counter()
    omni.build(work / "omni")
    omni_build = time.perf_counter() - started
    started = time.perf_counter()
    chat.build(work / "chat")
    chat_build = time.perf_counter() - started
    print(f"build: omni {omni_build:.1f} s, text-only chat {chat_build:.1f} s; "
          f"omni weights {(work / 'omni' / 'model.safetensors').stat().st_size / 2**20:.1f} MB")

    entries = {
        "omni": ModelEntry.model_validate(omni.catalogue(work / "omni")[0]),
        "text": ModelEntry.model_validate(chat.catalogue(work / "chat")[0]),
    }
    starts: dict[str, list[float]] = {"omni": [], "text": []}
    for round_no in range(args.starts):
        for name in (["text", "omni"] if round_no % 2 else ["omni", "text"]):
            process, client, seconds = start(entries[name], work)
            try:
                starts[name].append(seconds)
                print(f"start {round_no + 1} {name}: healthy after {seconds:.1f} s, {memory_mb(process)}", flush=True)
                if name == "omni" and round_no == args.starts - 1:
                    measure(client, entries[name].slug, args.rounds)
                    print(f"omni after the requests: {memory_mb(process)}")
            finally:
                client.close()
                stop(process)
    for name, seconds in starts.items():
        print(f"start-up {name}: median {statistics.median(seconds):.1f} s "
              f"(range {min(seconds):.1f}–{max(seconds):.1f})")


def measure(client: httpx.Client, slug: str, rounds: int) -> None:
    ask(client, slug, KINDS["png 64x64"](rounds) + KINDS["wav 1 s"](rounds))  # the first media request loads lazily
    times: dict[str, list[float]] = {kind: [] for kind in KINDS}
    tokens: dict[str, int] = {}
    for round_no in range(rounds):
        kinds = list(KINDS)
        kinds = kinds[round_no % len(kinds):] + kinds[:round_no % len(kinds)]
        for kind in kinds:
            elapsed, tokens[kind] = ask(client, slug, KINDS[kind](round_no))
            times[kind].append(elapsed)
    base = tokens["text only"]
    for kind, seconds in times.items():
        print(f"{kind:>24}: {statistics.median(seconds) * 1000:6.0f} ms (range {min(seconds) * 1000:.0f}–"
              f"{max(seconds) * 1000:.0f}), prompt tokens {tokens[kind]} (+{tokens[kind] - base})")


if __name__ == "__main__":
    main()
