"""vLLM's own OpenAI server on a loopback TCP port, as a remote backend (a multi-node `vllm serve` stand-in)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx

from appliance.catalogue import ModelEntry
from appliance.supervisor.launch import worker_environment
from appliance.supervisor.vllm_launch import VLLM_MODULE, option_flags, vllm_python
from tests.support.appliance import free_port


def tiny_vllm_entry(tiny_catalogue: Path) -> ModelEntry:
    table = next(t for t in tomllib.loads(tiny_catalogue.read_text())["model"] if t["engine"] == "vllm")
    return ModelEntry.model_validate({**table, "path": str((tiny_catalogue.parent / table["path"]).resolve())})


def wait_http(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 300) -> None:
    """Poll ``url`` until it answers 200; fail with the server's log if it exits or never answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"server exited:\n{log.read_text(errors='replace')[-3000:]}"
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer:\n{log.read_text(errors='replace')[-3000:]}")


@contextlib.contextmanager
def vllm_on_tcp(entry: ModelEntry, served_name: str, log: Path) -> Iterator[tuple[str, int]]:
    """Serve ``entry`` with vLLM on 127.0.0.1; yields its base URL (``…/v1``) and the server's pid."""
    port = free_port()
    command = [vllm_python(entry), "-m", str(VLLM_MODULE), "--model", str(entry.path), "--served-model-name",
               served_name, "--host", "127.0.0.1", "--port", str(port), "--disable-uvicorn-access-log",
               *option_flags(dict(entry.engine_options))]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=worker_environment(entry),
                                   start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/v1/models", process, log)
        yield f"http://127.0.0.1:{port}/v1", process.pid
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)
