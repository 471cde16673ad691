"""The command line and environment that start each engine's worker."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from appliance.catalogue import ModelEntry
from appliance.supervisor.vllm_launch import VLLM_MODULE, VllmOptionError, vllm_command, vllm_environment, vllm_python

# The engine worker module each engine runs (engines of later modalities add theirs).
WORKER_MODULES: dict[str, str] = {
    "sentence-transformers": "appliance.workers.embeddings",
    "diffusers": "appliance.workers.images",
    "faster-whisper": "appliance.workers.transcription",
    "piper": "appliance.workers.speech",
    "vllm": VLLM_MODULE,  # vLLM's own OpenAI server, from its own environment (vllm_launch.py)
    "transformers": "appliance.workers.transformers_chat",
}

# Nothing is ever fetched at run time: every engine sees the hubs' offline switches.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "VLLM_NO_USAGE_STATS": "1",
    # onnxruntime (Piper, Whisper's VAD) resolves mobile.events.data.microsoft.com from a long-lived
    # process unless told not to (found by tests/e2e/test_airgap.py's DNS trap).
    "ORT_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONUNBUFFERED": "1",
}


class LaunchError(ValueError):
    """This model cannot be started on this box (engine not implemented or not installed)."""


def is_supported(entry: ModelEntry) -> bool:
    return entry.engine in WORKER_MODULES


def worker_command(entry: ModelEntry, socket_path: Path) -> list[str]:
    module = WORKER_MODULES.get(entry.engine)
    if module is None:
        raise LaunchError(f"engine '{entry.engine}' has no worker on this appliance yet")
    if entry.engine == "vllm":
        try:
            return vllm_command(entry, socket_path)
        except VllmOptionError as exc:
            raise LaunchError(f"model '{entry.slug}': {exc}") from None
    python = str(entry.python) if entry.python else sys.executable
    return [python, "-m", module, "--socket", str(socket_path), "--entry", entry.model_dump_json()]


def worker_environment(entry: ModelEntry) -> dict[str, str]:
    env = dict(os.environ)
    env.update(OFFLINE_ENV)
    # OpenMP threads that spin after each batch steal the cores the gateway and the other workers
    # need (on two cores: embed throughput 0.35 → 0.66 of raw). An operator's own value wins.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if entry.engine == "vllm":
        env.update(vllm_environment(entry))
    return env


# The library each engine imports, for `appliance models check`.
ENGINE_LIBRARIES: dict[str, str] = {
    "vllm": "vllm",
    "transformers": "transformers",
    "sentence-transformers": "sentence_transformers",
    "diffusers": "diffusers",
    "faster-whisper": "faster_whisper",
    "piper": "piper",
}


def engine_installed(entry: ModelEntry) -> bool:
    """Whether the worker's interpreter can import the entry's engine library (without importing it here)."""
    library = ENGINE_LIBRARIES.get(entry.engine)
    if library is None:
        return True
    python = vllm_python(entry) if entry.engine == "vllm" else str(entry.python) if entry.python else sys.executable
    probe = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({library!r}) is None)"
    import subprocess

    try:
        return subprocess.run([python, "-c", probe], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
