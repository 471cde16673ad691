"""The command line and environment that start a local engine's worker (the engine registry says which)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from appliance.catalogue import ModelEntry
from appliance.engines.registry import engine_spec
from appliance.media.files import MEDIA_DIR_ENV
from appliance.supervisor.vllm_launch import VllmOptionError, vllm_environment, vllm_python

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
    """This model cannot be started on this box (a bad option for its engine's launcher)."""


def _launcher(reference: str) -> Callable[[ModelEntry, Path], list[str]]:
    module, _, function = reference.partition(":")
    return getattr(importlib.import_module(module), function)  # type: ignore[no-any-return]


def worker_command(entry: ModelEntry, socket_path: Path) -> list[str]:
    spec = engine_spec(entry.engine, entry.modality)
    if spec.worker_module is None:
        raise LaunchError(f"engine '{entry.engine}' runs elsewhere; it has no local worker")
    if spec.launcher is not None:
        try:
            return _launcher(spec.launcher)(entry, socket_path)
        except VllmOptionError as exc:
            raise LaunchError(f"model '{entry.slug}': {exc}") from None
    python = str(entry.python) if entry.python else sys.executable
    return [python, "-m", spec.worker_module, "--socket", str(socket_path), "--entry", entry.model_dump_json()]


def worker_environment(entry: ModelEntry, media_dir: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(OFFLINE_ENV)
    if media_dir is not None:  # where an image worker writes the files it hands to the media store
        env[MEDIA_DIR_ENV] = str(media_dir)
    # OpenMP threads that spin after each batch steal the cores the gateway and the other workers
    # need (on two cores: embed throughput 0.35 → 0.66 of raw). An operator's own value wins.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if entry.engine == "vllm":
        env.update(vllm_environment(entry))
    return env


def worker_python(entry: ModelEntry) -> str:
    return vllm_python(entry) if entry.engine == "vllm" else str(entry.python) if entry.python else sys.executable


def engine_installed(entry: ModelEntry) -> bool:
    """Whether the worker's interpreter can import the entry's engine library (without importing it here)."""
    library = engine_spec(entry.engine).library
    if library is None:
        return True
    probe = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({library!r}) is None)"
    try:
        return subprocess.run([worker_python(entry), "-c", probe], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
