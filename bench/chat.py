"""Streamed chat through the appliance vs straight at the same vLLM server, interleaved in one run.

    .venv/bin/python bench/chat.py [--rounds 5] [--streams 8] [--tokens 256] [--remote]
    .venv/bin/python bench/chat.py --image [FILE] | --audio [SECONDS] [--tokens 16] …

Starts `appliance serve` with the tiny chat model on vLLM (CPU build), then
round by round, alternating which side goes first: ``--streams`` concurrent
streamed chats of ``--tokens`` tokens each through ``POST /v1/inference/chat``,
and the same straight at vLLM's Unix socket (``/v1/chat/completions``). Per
side: streamed tokens/s (content chunks over wall time) and the median
time-to-first-token; per round, the ratios appliance/direct and the
difference in first-token time. Prints the medians with their spread and the
client's CPU time (aiohttp). ``--catalogue FILE --model SLUG`` measures a
real model instead.

``--remote`` serves vLLM on a loopback TCP port instead and puts the appliance
in front of it as a remote backend (``engine = "remote"``): the appliance over
TCP to vLLM vs straight at vLLM's TCP port.

``--image`` (a file, default a 1280×960 JPEG photo made here) and ``--audio``
(seconds of a 16 kHz WAV, the rate vLLM's CPU build takes, default 5) put the
same image or sound into every chat, as a ``data:`` URL / ``input_audio``,
on both sides: the appliance checks it, decodes and re-encodes it once and
reuses what it made for the same bytes (serving/media_parts.py), vLLM direct
gets the client's bytes (and reuses its own processing of the same image).
``--distinct`` sends a different photo in every request instead (a crop of a
larger one), so both sides decode every image. Short answers (``--tokens``
16 by default then), so requests/s and first-token latency measure the
media's path rather than decoding.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})

from appliance.config import load_settings  # noqa: E402
from appliance.supervisor.local_backend import socket_file  # noqa: E402
from tests.support.appliance import start_appliance  # noqa: E402
from tests.support.vllm import tiny_vllm_entry, vllm_on_tcp  # noqa: E402

TINY_SLUG = "scailabs/poolnoodle-omni"
PROMPT = [{"role": "user", "content": "Tell me a long story about a little model that lived in a box."}]


async def one_stream(session: aiohttp.ClientSession, url: str, body: dict[str, object]) -> tuple[int, float]:
    """Content chunks received and seconds to the first one."""
    started = time.perf_counter()
    first = 0.0
    tokens = 0
    async with session.post(url, json=body) as response:
        assert response.status == 200, await response.text()
        async for line in response.content:
            if line.startswith(b"data: {") and b'"content":"' in line and b'"content":""' not in line:
                if tokens == 0:
                    first = time.perf_counter() - started
                tokens += 1
    return tokens, first


def photos(count: int, width: int = 1280, height: int = 960) -> list[bytes]:
    """``count`` different JPEGs that compress like a photo (smooth gradients, some noise): crops of one picture."""
    import numpy as np
    from PIL import Image

    margin = 64
    y, x = np.mgrid[0:height + margin, 0:width + margin] / max(width, height)
    rng = np.random.default_rng(0)
    rgb = np.stack([x, y, (x + y) / 2], axis=-1) * 220 + rng.normal(0, 6, (height + margin, width + margin, 3))
    picture = Image.fromarray(rgb.clip(0, 255).astype("uint8"))
    made = []
    for n in range(count):
        left, top = n % margin, (n // margin) % margin
        out = io.BytesIO()
        picture.crop((left, top, left + width, top + height)).save(out, "JPEG", quality=90)
        made.append(out.getvalue())
    return made


def photo() -> bytes:
    return photos(1)[0]


def image_message(data: bytes) -> list[dict[str, object]]:
    kind = "png" if data.startswith(b"\x89PNG") else "jpeg"
    return [{"role": "user", "content": [
        {"type": "text", "text": "What is in this? Describe it at length."},
        {"type": "image_url", "image_url": {"url": f"data:image/{kind};base64,{base64.b64encode(data).decode()}"}}]}]


def media_prompt(image: Path | str | None, audio: float | None) -> list[dict[str, object]]:
    """PROMPT with the same image (a file, or "" for photo()) or ``audio`` seconds of 16 kHz WAV in it."""
    parts: list[dict[str, object]] = [{"type": "text", "text": "What is in this? Describe it at length."}]
    if image is not None:
        data = Path(image).read_bytes() if image else photo()
        parts = image_message(data)[0]["content"]  # type: ignore[assignment]
        print(f"image: {len(data)} bytes", flush=True)
    if audio is not None:
        from tests.support.audio import audio_file

        data = audio_file(audio, "wav", rate=16000)
        parts.append({"type": "input_audio", "input_audio": {"data": base64.b64encode(data).decode(),
                                                              "format": "wav"}})
        print(f"audio: {audio} s of 16 kHz WAV, {len(data)} bytes", flush=True)
    return [{"role": "user", "content": parts}]


Prompts = list[dict[str, object]] | Iterator[list[dict[str, object]]]


async def side(session: aiohttp.ClientSession, url: str, model: str, streams: int, tokens: int,
               seed0: int, prompt: Prompts = PROMPT) -> tuple[float, float, float]:
    """Streamed tokens/s over all streams, the median time to first token (seconds), and requests/s.
    ``prompt``: the messages of every request, or an iterator giving each request its own."""
    bodies = [{"model": model, "messages": prompt if isinstance(prompt, list) else next(prompt),
               "max_tokens": tokens, "stream": True, "seed": seed0 + i, "ignore_eos": True} for i in range(streams)]
    started = time.perf_counter()
    results = await asyncio.gather(*(one_stream(session, url, body) for body in bodies))
    elapsed = time.perf_counter() - started
    return (sum(count for count, _ in results) / elapsed, statistics.median(first for _, first in results),
            streams / elapsed)


async def run(url: str, key: str, direct_to: Path | str, models: dict[str, str], rounds: int, streams: int,
              tokens: int, prompt: Prompts = PROMPT) -> None:
    """``direct_to``: vLLM's Unix socket, or its TCP base URL; ``models``: the model's name on each leg."""
    gateway = aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"},
                                    connector=aiohttp.TCPConnector(limit=streams * 2))
    if isinstance(direct_to, Path):
        direct = aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(direct_to), limit=streams * 2))
        direct_url = "http://vllm/v1/chat/completions"
    else:
        direct = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=streams * 2))
        direct_url = f"{direct_to}/chat/completions"
    legs = {"appliance": (gateway, f"{url}/v1/inference/chat"), "direct": (direct, direct_url)}
    try:
        for name, (session, target) in legs.items():  # warm-up, both sides
            await side(session, target, models[name], streams, 16, 0, prompt)
        rate_ratios, ttft_added, rates, ttfts = [], [], {"appliance": [], "direct": []}, {"appliance": [], "direct": []}
        request_ratios = []
        cpu = time.process_time()
        for round_no in range(1, rounds + 1):
            order = ["appliance", "direct"] if round_no % 2 else ["direct", "appliance"]
            result = {}
            for name in order:
                session, target = legs[name]
                result[name] = await side(session, target, models[name], streams, tokens, round_no * 100, prompt)
                rates[name].append(result[name][0])
                ttfts[name].append(result[name][1])
            rate_ratios.append(result["appliance"][0] / result["direct"][0])
            request_ratios.append(result["appliance"][2] / result["direct"][2])
            ttft_added.append(result["appliance"][1] - result["direct"][1])
            print(f"round {round_no}: appliance {result['appliance'][0]:7.1f} tok/s {result['appliance'][2]:5.2f} "
                  f"req/s, first token {result['appliance'][1] * 1e3:6.1f} ms | direct {result['direct'][0]:7.1f} "
                  f"tok/s {result['direct'][2]:5.2f} req/s, first token {result['direct'][1] * 1e3:6.1f} ms | "
                  f"ratio {rate_ratios[-1]:.3f}, added first-token {ttft_added[-1] * 1e3:+.1f} ms", flush=True)
        cpu = time.process_time() - cpu
        print(f"streamed tokens/s appliance/direct: median {statistics.median(rate_ratios):.3f} "
              f"(min {min(rate_ratios):.3f}, max {max(rate_ratios):.3f}); appliance median "
              f"{statistics.median(rates['appliance']):.0f} tok/s, direct median {statistics.median(rates['direct']):.0f}")
        print(f"requests/s appliance/direct: median {statistics.median(request_ratios):.3f} "
              f"(min {min(request_ratios):.3f}, max {max(request_ratios):.3f})")
        print(f"time to first token added by the appliance: median {statistics.median(ttft_added) * 1e3:+.2f} ms "
              f"(min {min(ttft_added) * 1e3:+.2f}, max {max(ttft_added) * 1e3:+.2f}); appliance median "
              f"{statistics.median(ttfts['appliance']) * 1e3:.1f} ms, direct median "
              f"{statistics.median(ttfts['direct']) * 1e3:.1f} ms")
        print(f"client CPU over the measured rounds: {cpu:.2f} s")
    finally:
        await gateway.close()
        await direct.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--tokens", type=int, help="tokens per answer (default 256; 16 with --image or --audio)")
    parser.add_argument("--image", nargs="?", const="", help="the same image in every chat: a PNG or JPEG file "
                        "(default: a 1280×960 JPEG photo made here)")
    parser.add_argument("--audio", nargs="?", type=float, const=5.0, help="the same sound in every chat: seconds of "
                        "16 kHz WAV (default 5)")
    parser.add_argument("--distinct", action="store_true", help="with --image: a different photo in every request")
    parser.add_argument("--catalogue", type=Path, help="a models.toml with the model to measure (default: tiny)")
    parser.add_argument("--model", default=TINY_SLUG)
    parser.add_argument("--remote", action="store_true", help="vLLM on TCP behind the appliance as a remote backend")
    args = parser.parse_args()
    if args.tokens is None:
        args.tokens = 16 if args.image is not None or args.audio is not None or args.distinct else 256
    if args.remote:
        remote(args)
        return

    work = Path(tempfile.mkdtemp(prefix="bench-chat-"))
    catalogue = args.catalogue
    if catalogue is None:
        from appliance.tiny_models import build_all

        catalogue = build_all(REPO / ".cache" / "tiny-models")
        import tomllib

        import tomli_w

        tables = [t for t in tomllib.loads(catalogue.read_text())["model"] if t["slug"] == args.model]
        for table in tables:
            table["path"] = str((catalogue.parent / table["path"]).resolve())
        catalogue = work / "models.toml"
        catalogue.write_text(tomli_w.dumps({"model": tables}))
    state = work / "state"
    settings = load_settings(None, state_dir=state)
    with start_appliance(catalogue, state) as running:
        url, key = running.url, running.create_key()
        print(f"model={args.model} streams={args.streams} tokens={args.tokens} rounds={args.rounds} "
              f"cores={os.cpu_count()}")
        socket = settings.socket_dir / socket_file(args.model)
        prompt: Prompts = PROMPT
        if args.distinct:
            made = photos(2 * args.streams * (args.rounds + 1))
            print(f"images: {len(made)} different photos, {statistics.mean(map(len, made)):.0f} bytes on average")
            prompt = iter([image_message(data) for data in made])
        elif args.image is not None or args.audio is not None:
            prompt = media_prompt(args.image, args.audio)
        asyncio.run(run(url, key, socket, {"appliance": args.model, "direct": args.model}, args.rounds,
                        args.streams, args.tokens, prompt))


def remote(args: argparse.Namespace) -> None:
    """The tiny model on a TCP vLLM, and the appliance in front of it with ``engine = "remote"``."""
    import tomli_w

    from appliance.tiny_models import build_all

    work = Path(tempfile.mkdtemp(prefix="bench-chat-remote-"))
    entry = tiny_vllm_entry(build_all(REPO / ".cache" / "tiny-models"))
    with vllm_on_tcp(entry, TINY_SLUG, work / "vllm.log") as (base_url, _pid):
        catalogue = work / "models.toml"
        catalogue.write_text(tomli_w.dumps({"model": [{
            "slug": "bench/remote-chat", "modality": "chat", "engine": "remote", "url": [base_url],
            "remote_model": TINY_SLUG}]}))
        with start_appliance(catalogue, work / "state") as running:
            print(f"remote: vLLM at {base_url}; streams={args.streams} tokens={args.tokens} rounds={args.rounds} "
                  f"cores={os.cpu_count()}")
            asyncio.run(run(running.url, running.create_key(), base_url,
                            {"appliance": "bench/remote-chat", "direct": TINY_SLUG}, args.rounds, args.streams,
                            args.tokens))


if __name__ == "__main__":
    main()
