"""The peers of bench/peers.py: each installed on demand into its own virtual environment under bench/.peers/.

An environment is (re)built when its stamp (the requirements, the torch pin,
and whether the box has a GPU) differs from what is asked; otherwise it is
used as it is. A peer that cannot be installed raises ``PeerUnavailable``
with pip's reason, and the bench reports it as skipped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
PEERS_DIR = REPO / "bench" / ".peers"
CPU_CONSTRAINTS = REPO / "scripts" / "constraints-cpu.txt"  # torch==2.13.0, the CPU build (ENGINES.md)
INSTALL_TIMEOUT_S = 1800


class PeerUnavailable(Exception):
    """A peer that cannot be installed or started here; the message says why."""


@dataclass(frozen=True)
class Peer:
    name: str
    requirements: tuple[str, ...]
    check: str  # Python that must run in the environment once installed
    pins_torch: bool = False  # on a CPU box, hold torch to the CPU build

    @property
    def venv(self) -> Path:
        return PEERS_DIR / self.name

    def binary(self, name: str) -> Path:
        return self.venv / "bin" / name


INFINITY = Peer("infinity", ("infinity-emb[server,torch]==0.0.78",),
                "import infinity_emb.infinity_server, torch", pins_torch=True)
# 1.107.0 and 1.107.1 were compromised releases: stay on a pinned, known-good one.
LITELLM = Peer("litellm", ("litellm[proxy]==1.108.7",), "import litellm.proxy.proxy_server")


def has_gpu() -> bool:
    return shutil.which("nvidia-smi") is not None and subprocess.run(
        ["nvidia-smi", "-L"], capture_output=True).returncode == 0


def directory_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def ensure(peer: Peer) -> Path:
    """The Python of ``peer``'s environment, installing it first if needed."""
    gpu = has_gpu()
    constraints = ["-c", str(CPU_CONSTRAINTS)] if peer.pins_torch and not gpu else []
    pin = CPU_CONSTRAINTS.read_text() if constraints else ""
    want = f"{' '.join(peer.requirements)}\n{pin}gpu={int(gpu)}\n"
    python = peer.binary("python")
    stamp = peer.venv / ".peer-stamp"
    if python.exists() and stamp.exists() and stamp.read_text() == want:
        return python
    print(f"peers: installing {' '.join(peer.requirements)} into {peer.venv} …", flush=True)
    started = time.monotonic()
    shutil.rmtree(peer.venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(peer.venv)], check=True)
    try:
        result = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                                 *constraints, *peer.requirements],
                                capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise PeerUnavailable(f"pip install did not finish in {INSTALL_TIMEOUT_S} s") from exc
    if result.returncode != 0:
        noise = "is ignored: it is neither"  # this machine's unused local index folders
        errors = [line for line in result.stderr.splitlines() if line.strip() and noise not in line]
        raise PeerUnavailable("pip install failed: " + " | ".join(errors[-4:]))
    checked = subprocess.run([str(python), "-c", peer.check], capture_output=True, text=True, timeout=300)
    if checked.returncode != 0:
        raise PeerUnavailable(f"installed but does not import: {checked.stderr.strip().splitlines()[-1:]}")
    listed = subprocess.run([str(python), "-m", "pip", "list"], capture_output=True, text=True).stdout
    if not gpu and any(line.lower().startswith("nvidia-") for line in listed.splitlines()):
        print(f"peers: warning: CUDA packages in {peer.venv} on a CPU box", flush=True)
    stamp.write_text(want)
    print(f"peers: installed {peer.name} in {time.monotonic() - started:.0f} s, "
          f"{directory_size(peer.venv) / 2**20:.0f} MiB", flush=True)
    return python


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and every process under it."""
    total = 0.0
    root = psutil.Process(pid)
    for process in (root, *root.children(recursive=True)):
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
    return total


@contextlib.contextmanager
def serve(command: list[str], ready_url: str, log: Path, env: dict[str, str] | None = None,
          timeout: float = 300) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server until the block ends; it is ready when ``ready_url`` answers 200."""
    from tests.support.vllm import wait_http

    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                   env={**os.environ, **(env or {})})
    try:
        try:
            wait_http(ready_url, process, log, timeout=timeout)
        except (AssertionError, TimeoutError) as exc:
            raise PeerUnavailable(f"{Path(command[0]).name} did not start: {str(exc)[-600:]}") from exc
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
