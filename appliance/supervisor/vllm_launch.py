"""The command line of a vLLM OpenAI server for one catalogue entry.

vLLM runs from its own virtual environment (it pins its own torch and
transformers). ``engine_options`` become vLLM flags: ``max_model_len = 8192``
becomes ``--max-model-len 8192``, ``enforce_eager = true`` becomes
``--enforce-eager``, a list becomes repeated values; a few options are the
appliance's own (below). vLLM itself rejects a flag it does not know, and the
worker's log says which.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from appliance.catalogue import ModelEntry
from appliance.engines.registry import engine_spec

VLLM_MODULE = engine_spec("vllm").worker_module
REPO_VLLM_PYTHON = Path(__file__).resolve().parents[2] / ".venv-vllm" / "bin" / "python"

# Options that set an environment variable of vLLM rather than a flag.
ENV_OPTIONS = {
    "cpu_kvcache_space_gb": "VLLM_CPU_KVCACHE_SPACE",  # KV cache size of the CPU build, in GiB
    "cpu_omp_threads_bind": "VLLM_CPU_OMP_THREADS_BIND",
}
# Options of the appliance's own about how it runs vLLM (supervisor/priority.py): neither flag nor variable.
OWN_OPTIONS = {"busy_poll_nice", "stall_timeout_s"}
# The appliance decides these itself; a catalogue must not override them.
RESERVED = {"model", "served_model_name", "uds", "host", "port", "api_key"}
# vLLM fetches an http(s) media URL in a request itself; the only host it may fetch from is one that cannot exist
# (RFC 2606), so a URL that slips past the gateway is refused instead of reaching into the LAN.
NO_MEDIA_HOSTS = ["media-fetching-is-off.invalid"]


class VllmOptionError(ValueError):
    pass


def vllm_python(entry: ModelEntry) -> str:
    """The interpreter of vLLM's environment: the entry's ``python``, APPLIANCE_VLLM_PYTHON, or the repo's."""
    if entry.python:
        return str(entry.python)
    configured = os.environ.get("APPLIANCE_VLLM_PYTHON")
    if configured:
        return configured
    return str(REPO_VLLM_PYTHON) if REPO_VLLM_PYTHON.exists() else sys.executable


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def option_flags(options: dict[str, Any]) -> list[str]:
    """``engine_options`` as vLLM flags (without the environment-only and appliance options)."""
    args: list[str] = []
    for name, value in options.items():
        if name in ENV_OPTIONS or name in OWN_OPTIONS or name == "extra_args":
            continue
        if name in RESERVED:
            raise VllmOptionError(f"engine option '{name}' is set by the appliance itself; remove it")
        if name == "tool_call_parser":
            args += ["--enable-auto-tool-choice", "--tool-call-parser", str(value)]
        elif value is True:
            args.append(_flag(name))
        elif value is False or value is None:
            continue
        elif isinstance(value, list):
            args += [_flag(name), *(str(item) for item in value)]
        elif isinstance(value, dict):
            args += [_flag(name), json.dumps(value)]
        else:
            args += [_flag(name), str(value)]
    extra = options.get("extra_args", [])
    if not isinstance(extra, list):
        raise VllmOptionError("engine option 'extra_args' must be a list of strings")
    return args + [str(item) for item in extra]


def vllm_command(entry: ModelEntry, socket_path: Path) -> list[str]:
    options = dict(entry.engine_options)
    if "max_model_len" not in options and entry.context_window:
        options["max_model_len"] = entry.context_window
    options.setdefault("scheduling_policy", "priority")  # batch lines carry a low priority (batch/endpoints.py)
    options.setdefault("allowed_media_domains", NO_MEDIA_HOSTS)
    return [
        vllm_python(entry), "-m", VLLM_MODULE,
        "--model", str(entry.path), "--served-model-name", entry.slug, "--uds", str(socket_path),
        "--disable-uvicorn-access-log", "--disable-fastapi-docs",
        *option_flags(options),
    ]


def vllm_environment(entry: ModelEntry) -> dict[str, str]:
    return {variable: str(entry.engine_options[name]) for name, variable in ENV_OPTIONS.items()
            if name in entry.engine_options}
