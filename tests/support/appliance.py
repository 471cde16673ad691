"""Start a real `appliance serve` process on a free port, and talk to it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

READY_TIMEOUT_S = 180


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli(*args: str, state_dir: Path, timeout: float = 60,
        python: str = sys.executable) -> subprocess.CompletedProcess[str]:
    """Run `appliance ARGS…` against ``state_dir`` (with ``python``: an installed appliance)."""
    env = {**os.environ, "APPLIANCE_STATE_DIR": str(state_dir)}
    return subprocess.run([python, "-m", "appliance.cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


@dataclass
class RunningAppliance:
    url: str
    state_dir: Path
    catalogue: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    keys: dict[str, str] = field(default_factory=dict)
    python: str = sys.executable

    def create_key(self, *args: str) -> str:
        """A new key (CLI `keys create`); extra ``args`` like ``--permission``, ``--model``, ``--rate-limit``."""
        result = cli("keys", "create", "test", *args, state_dir=self.state_dir, python=self.python)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip().splitlines()[-1]

    def client(self, key: str | None = None, timeout: float = 60) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def engine_log(self, slug: str) -> str:
        """What the engine of ``slug`` printed (STATE/logs/<model>.log); empty before it started."""
        from appliance.supervisor.engine_logs import log_path

        path = log_path(self.state_dir / "logs", slug)
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"appliance exited with {self.process.returncode}:\n{self.log()[-4000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/ready", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise TimeoutError(f"appliance not ready after {timeout} s:\n{self.log()[-4000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode


@contextlib.contextmanager
def start_appliance(catalogue: Path, state_dir: Path, wait: bool = True, env: dict[str, str] | None = None,
                    python: str = sys.executable, new_session: bool = False) -> Iterator[RunningAppliance]:
    """``new_session``: the gateway leads a process group of its own (as under systemd), which a test may kill
    whole without killing itself."""
    port = free_port()
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / "serve.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [python, "-m", "appliance.cli", "serve", "--config", str(catalogue), "--state-dir",
             str(state_dir), "--host", "127.0.0.1", "--port", str(port)],
            stdout=log_file, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
            start_new_session=new_session,
        )
    running = RunningAppliance(f"http://127.0.0.1:{port}", state_dir, catalogue, process, log_path, python=python)
    try:
        if wait:
            running.wait_ready()
        yield running
    finally:
        running.stop()
