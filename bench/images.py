"""Images through the appliance vs the raw diffusers pipeline, and embeddings while images are generated.

* Throughput: images/s of ``POST /v1/inference/images/generate`` (url mode)
  vs ``StableDiffusionXLPipeline`` called in this process with the same model,
  size, steps and guidance. The raw side is timed twice from the same calls:
  the pipeline alone, and the pipeline plus the PNG encoding a client needs
  anyway. The appliance side runs twice: one client at a time (compared with
  pipeline + PNG; aim ≥ 0.97) and ``--pipelined`` clients at once, so the
  worker encodes one request's PNG while the next one generates (compared with
  the pipeline alone; aim ≥ 0.95).
* Isolation: p99 latency of ``POST /v1/inference/embed`` while images are
  being generated vs idle. Aim: ≤ 1.5 × idle. On a CPU box the two engines
  share the same cores, so this measures core sharing as much as the gateway;
  the p99 of ``GET /v1/models`` (answered by the gateway alone) shows the
  gateway's own part: under images generated through the gateway, and, as a
  control, under the same images asked straight from the worker's socket
  (same CPU load, no gateway work). ``--image-threads`` gives the image worker
  fewer torch threads; ``--image-cpus 1`` pins it to core 1 (``engine_options.cpus``);
  ``--image-nice 10`` lowers its CPU priority (``engine_options.nice``).

Rounds run A, B, A, B… and are short, so the machine's drift (and other
processes) hit both sides alike; each figure is the median of the per-round
ratios, with their spread.

    .venv/bin/python bench/images.py [--rounds 9] [--images 2] [--size 1024x1024] [--image-cpus 1]
                                     [--catalogue models.toml]

Without ``--catalogue`` it uses the tiny models (``appliance tiny-models``).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import tomli_w

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
# What the supervisor gives every worker (supervisor/launch.py), so the raw side's OpenMP threads do not spin
# either: without it, on a busy box, the raw pipeline ran 3x slower than the same pipeline in the worker.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from appliance.catalogue import ModelEntry, load_catalogue  # noqa: E402
from appliance.config import load_settings  # noqa: E402
from appliance.protocol.images import allowed_sizes  # noqa: E402
from appliance.workers.images import DEFAULT_GUIDANCE, DEFAULT_PNG_COMPRESS_LEVEL, DEFAULT_STEPS, \
    option_map  # noqa: E402
from tests.conftest import catalogue_subset  # noqa: E402
from tests.support.appliance import start_appliance  # noqa: E402

PROMPT = "A cozy reading nook with warm lighting, studio ghibli style"
IMAGE_MODEL = "stability/sd-xl"
EMBED_MODEL = "openai/text-embedding-3-small"
MODELS = "/v1/models"  # answered by the gateway alone: its latency shows the gateway's own stalls


def load_raw_pipeline(entry: ModelEntry) -> Any:
    import torch
    from diffusers import StableDiffusionXLPipeline

    if entry.engine_options.get("threads"):
        torch.set_num_threads(int(entry.engine_options["threads"]))  # as the worker does
    pipe = StableDiffusionXLPipeline.from_pretrained(str(entry.path), dtype=torch.float32, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def raw_round(pipe: Any, entry: ModelEntry, images: int, size: str) -> tuple[float, float]:
    """Seconds for ``images`` images: (pipeline only, pipeline + PNG encoding)."""
    import torch

    width, _, height = size.partition("x")
    steps = option_map(entry.engine_options, "steps", DEFAULT_STEPS)["standard"]
    guidance = option_map(entry.engine_options, "guidance", DEFAULT_GUIDANCE)["vivid"]
    compress = int(entry.engine_options.get("png_compress_level", DEFAULT_PNG_COMPRESS_LEVEL))
    pipe_s = png_s = 0.0
    with torch.inference_mode():
        for _ in range(images):
            started = time.perf_counter()
            image = pipe(prompt=PROMPT, width=int(width), height=int(height), num_inference_steps=int(steps),
                         guidance_scale=float(guidance)).images[0]
            encoded = time.perf_counter()
            image.save(io.BytesIO(), format="PNG", compress_level=compress)  # the PNG a caller needs anyway
            pipe_s += encoded - started
            png_s += time.perf_counter() - encoded
    return pipe_s, pipe_s + png_s


def appliance_round(url: str, key: str, images: int, size: str, concurrency: int) -> float:
    """Seconds for ``images`` url-mode generations through the gateway, ``concurrency`` at a time."""
    body = {"model": IMAGE_MODEL, "prompt": PROMPT, "size": size, "n": 1}
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=600) as client:
        def one(_: int) -> None:
            response = client.post("/v1/inference/images/generate", json=body)
            response.raise_for_status()

        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, range(images)))
        return time.perf_counter() - started


async def latencies(url: str, key: str, requests: int, concurrency: int, path: str = "/v1/inference/embed",
                    ) -> list[float]:
    """Seconds per request of ``requests`` embed calls (or GETs of ``path``), ``concurrency`` at a time."""
    import aiohttp

    body = {"model": EMBED_MODEL, "input": ["first text", "second text"]}
    seen: list[float] = []
    remaining = iter(range(requests))
    async with aiohttp.ClientSession(url, headers={"Authorization": f"Bearer {key}"}) as session:
        async def client() -> None:
            for _ in remaining:
                started = time.perf_counter()
                call = session.post(path, json=body) if path.startswith("/v1/inference") else session.get(path)
                async with call as response:
                    await response.read()
                    assert response.status == 200, response.status
                seen.append(time.perf_counter() - started)

        await asyncio.gather(*(client() for _ in range(concurrency)))
    return seen


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def ms(values: list[float]) -> str:
    return f"{p99(values) * 1000:.1f} ms"


def background_images(url: str, key: str, size: str, stop: threading.Event, count: list[int],
                      worker_socket: Path | None = None) -> None:
    """Generate images one after another until ``stop``: through the gateway, or straight at the worker's socket."""
    body = {"model": IMAGE_MODEL, "prompt": PROMPT, "size": size}
    if worker_socket is None:
        client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=600)
        path = "/v1/inference/images/generate"
    else:
        client = httpx.Client(transport=httpx.HTTPTransport(uds=str(worker_socket)), base_url="http://worker",
                              timeout=600)
        path, body = "/v1/images/generations", {**body, "response_format": "b64_json"}
    with client:
        while not stop.is_set():
            client.post(path, json=body).raise_for_status()
            count[0] += 1


def under_load(url: str, key: str, args: argparse.Namespace, worker_socket: Path | None,
               ) -> tuple[list[float], list[float], int]:
    """Embed and gateway-only latencies while images are generated; and how many were."""
    stop, count = threading.Event(), [0]
    loader = threading.Thread(target=background_images, args=(url, key, args.size, stop, count, worker_socket))
    loader.start()
    time.sleep(1.0)  # the first image is under way
    embed = asyncio.run(latencies(url, key, args.embed_requests, args.embed_concurrency))
    gateway = asyncio.run(latencies(url, key, args.embed_requests, args.embed_concurrency, MODELS))
    stop.set()
    loader.join()
    return embed, gateway, count[0]


def summary(label: str, ratios: list[float]) -> str:
    return (f"{label}: median {statistics.median(ratios):.3f}, spread {min(ratios):.3f}–{max(ratios):.3f} "
            f"over {len(ratios)} rounds")


def throughput(url: str, key: str, entry: ModelEntry, args: argparse.Namespace) -> tuple[list[float], list[float]]:
    """Per-round ratios: (pipelined appliance / pipeline alone, one-client appliance / pipeline + PNG)."""
    pipe = load_raw_pipeline(entry)
    raw_round(pipe, entry, 1, args.size)  # warm both sides up
    appliance_round(url, key, 1, args.size, 1)
    print(f"throughput: {args.images} images of {args.size} per side and round; appliance with 1 client, then "
          f"{args.pipelined} at once", flush=True)
    pipe_ratios, png_ratios = [], []
    for round_no in range(1, args.rounds + 1):
        raw_pipe_s, raw_png_s = raw_round(pipe, entry, args.images, args.size)
        single_s = appliance_round(url, key, args.images, args.size, 1)
        piped_s = appliance_round(url, key, args.images, args.size, args.pipelined)
        pipe_ratios.append(raw_pipe_s / piped_s)
        png_ratios.append(raw_png_s / single_s)
        print(f"  round {round_no}: raw {args.images / raw_pipe_s:.3f} img/s (with PNG {args.images / raw_png_s:.3f}),"
              f" appliance {args.images / single_s:.3f} img/s, pipelined {args.images / piped_s:.3f}", flush=True)
    return pipe_ratios, png_ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--images", type=int, default=2, help="images per throughput round and side")
    parser.add_argument("--size", default="1024x1024")
    parser.add_argument("--pipelined", type=int, default=2, help="image clients of the pipelined appliance side")
    parser.add_argument("--embed-requests", type=int, default=400, help="embed requests per isolation round")
    parser.add_argument("--embed-concurrency", type=int, default=4)
    parser.add_argument("--image-threads", type=int, default=None, help="torch threads of the image worker")
    parser.add_argument("--image-cpus", type=int, nargs="+", default=None, help="cores the image worker runs on")
    parser.add_argument("--image-nice", type=int, default=None, help="CPU priority of the image worker (0-19)")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--catalogue", type=Path, default=None)
    args = parser.parse_args()

    if args.catalogue is None:
        subprocess.run([sys.executable, "-m", "appliance.cli", "tiny-models", str(REPO / ".cache/tiny-models")],
                       check=True, capture_output=True)
        args.catalogue = REPO / ".cache/tiny-models/models.toml"
    entries = {entry.slug: entry for entry in load_catalogue(args.catalogue)}
    image_entry = entries[IMAGE_MODEL]
    options = dict(image_entry.engine_options)
    if args.image_threads:
        options["threads"] = args.image_threads
    if args.image_cpus:
        options["cpus"] = args.image_cpus
    if args.image_nice is not None:
        options["nice"] = args.image_nice
    if args.size not in allowed_sizes(options):
        options["sizes"] = [*allowed_sizes(options), args.size]  # a smaller size for quick runs on a busy box
    image_entry = image_entry.model_copy(update={"engine_options": options})

    with tempfile.TemporaryDirectory(prefix="bench-images-") as tmp:
        state = Path(tmp)
        catalogue = catalogue_subset(args.catalogue, [IMAGE_MODEL, EMBED_MODEL], state / "models.toml")
        tables = tomllib.loads(catalogue.read_text())
        for table in tables["model"]:
            if table["slug"] == IMAGE_MODEL:
                table["engine_options"] = options
        catalogue.write_text(tomli_w.dumps(tables))
        with start_appliance(catalogue, state) as app:
            key = app.create_key()
            print(f"load average at start: {' '.join(f'{load:.2f}' for load in os.getloadavg())}", flush=True)
            pipe_ratios, png_ratios = [], []
            if not args.skip_throughput:
                pipe_ratios, png_ratios = throughput(app.url, key, image_entry, args)

            print(f"isolation: {args.embed_requests} embed requests, {args.embed_concurrency} at a time, idle vs "
                  f"while {args.size} images are generated", flush=True)
            asyncio.run(latencies(app.url, key, 50, args.embed_concurrency))  # warm-up
            socket = next(load_settings(None, state_dir=state).socket_dir.glob("*sd-xl*.sock"))
            ratios: dict[str, list[float]] = {"embed": [], "gateway": [], "control": []}
            for round_no in range(1, args.rounds + 1):
                idle = asyncio.run(latencies(app.url, key, args.embed_requests, args.embed_concurrency))
                idle_gw = asyncio.run(latencies(app.url, key, args.embed_requests, args.embed_concurrency, MODELS))
                cpu = resource.getrusage(resource.RUSAGE_SELF)
                loaded, loaded_gw, images = under_load(app.url, key, args, None)
                client_cpu = resource.getrusage(resource.RUSAGE_SELF).ru_utime - cpu.ru_utime
                _, control_gw, control_images = under_load(app.url, key, args, socket)
                ratios["embed"].append(p99(loaded) / p99(idle))
                ratios["gateway"].append(p99(loaded_gw) / p99(idle_gw))
                ratios["control"].append(p99(control_gw) / p99(idle_gw))
                print(f"  round {round_no}: embed p99 idle {ms(idle)}, under image load {ms(loaded)}; "
                      f"GET /v1/models p99 idle {ms(idle_gw)}, images through the gateway {ms(loaded_gw)}, "
                      f"images straight to the worker {ms(control_gw)} ({images} + {control_images} images; "
                      f"bench process CPU {client_cpu:.2f} s)", flush=True)

    print(f"load average at the end: {' '.join(f'{load:.2f}' for load in os.getloadavg())}")
    if pipe_ratios:
        print(summary(f"images/s appliance, {args.pipelined} clients (pipelined) / raw pipeline alone", pipe_ratios))
        print(summary("images/s appliance, 1 client / raw pipeline + PNG", png_ratios))
    print(summary("embed p99 under image load / idle", ratios["embed"]))
    print(summary("GET /v1/models p99, images through the gateway / idle", ratios["gateway"]))
    print(summary("GET /v1/models p99, images straight to the worker / idle (control)", ratios["control"]))


if __name__ == "__main__":
    main()
