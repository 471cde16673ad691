"""Start one real worker process (``python -m appliance.workers.X``) on a Unix socket, as the supervisor does."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from appliance.catalogue import ModelEntry

READY_TIMEOUT_S = 120


@dataclass
class RunningWorker:
    socket: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    def client(self, timeout: float = 60) -> httpx.Client:
        return httpx.Client(transport=httpx.HTTPTransport(uds=str(self.socket)), base_url="http://worker",
                            timeout=timeout)

    def async_client(self, timeout: float = 60) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=64)
        return httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=str(self.socket), limits=limits),
                                 base_url="http://worker", timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def run_worker(module: str, entry: ModelEntry, log_path: Path, log_level: str = "INFO",
               timeout: float = READY_TIMEOUT_S) -> subprocess.CompletedProcess[str] | RunningWorker:
    """Start the worker; its answer to /health means it loaded. A worker that exits instead is returned as such."""
    directory = Path(tempfile.mkdtemp(prefix="worker-", dir="/tmp"))  # a Unix socket's path must be short
    socket = directory / "w.sock"
    env = {**os.environ, "APPLIANCE_WORKER_LOG_LEVEL": log_level}
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", module, "--socket", str(socket),
                                    "--entry", entry.model_dump_json()], stdout=log, stderr=subprocess.STDOUT, env=env)
    worker = RunningWorker(socket, process, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            shutil.rmtree(directory, ignore_errors=True)
            return subprocess.CompletedProcess(process.args, process.returncode, worker.log(), "")
        if socket.exists():
            with contextlib.suppress(httpx.HTTPError), worker.client(timeout=2) as client:
                if client.get("/health").status_code == 200:
                    return worker
        time.sleep(0.1)
    stop(worker)
    raise TimeoutError(f"{module} did not answer /health within {timeout} s:\n{worker.log()[-4000:]}")


def stop(worker: RunningWorker) -> None:
    if worker.process.poll() is None:
        worker.process.terminate()
        try:
            worker.process.wait(30)
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait(10)
    shutil.rmtree(worker.socket.parent, ignore_errors=True)


@contextlib.contextmanager
def started_worker(module: str, entry: ModelEntry, log_path: Path, log_level: str = "INFO") -> Iterator[RunningWorker]:
    worker = run_worker(module, entry, log_path, log_level)
    if isinstance(worker, subprocess.CompletedProcess):
        raise RuntimeError(f"{module} exited with {worker.returncode}:\n{worker.stdout[-4000:]}")
    try:
        yield worker
    finally:
        stop(worker)
