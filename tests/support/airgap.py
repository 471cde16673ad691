"""Run inside a network namespace with loopback only: the appliance, one request of every modality, and a
watch on every socket of its processes. `python -m tests.support.airgap --catalogue C --state S --report R`.

Every address of the namespace is routed to loopback (`local default dev lo`), and traps listen on
the ports a call-out would use first (DNS 53, HTTP 80, HTTPS 443), so an attempt to reach the hub
is recorded instead of failing unseen; a sampler lists every non-loopback socket that any process
of the appliance holds. The report (JSON) is judged by tests/e2e/test_airgap.py.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from tests.support.appliance import start_appliance
from tests.support.audio import encode, tone

TRAP_TCP_PORTS = (80, 443)
SAMPLE_EVERY_S = 0.1
# Background telemetry fires some seconds into a process's life (onnxruntime's after ~10 s): the
# appliance stays up, watched, this long after the last answer.
LINGER_S = 20


def route_everything_to_loopback() -> None:
    subprocess.run(["ip", "route", "add", "local", "default", "dev", "lo", "table", "local"], check=True)
    subprocess.run(["ip", "-6", "route", "add", "local", "::/0", "dev", "lo", "table", "local"], check=False)


class Traps:
    """Listeners on 0.0.0.0 that record whoever calls: an appliance process reaching out would land here."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        self.sockets: list[socket.socket] = []
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("0.0.0.0", 53))
        self._serve(udp, self._datagram)
        for port in TRAP_TCP_PORTS:
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind(("0.0.0.0", port))
            tcp.listen(16)
            self._serve(tcp, self._connection)

    def _serve(self, sock: socket.socket, handle: Any) -> None:
        self.sockets.append(sock)
        threading.Thread(target=handle, args=(sock,), daemon=True).start()

    def _datagram(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while True:
                data, peer = sock.recvfrom(4096)
                self.hits.append(f"udp {sock.getsockname()[1]} from {peer}: {data[12:60]!r}")  # the DNS question

    def _connection(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, peer = sock.accept()
                self.hits.append(f"tcp {sock.getsockname()[1]} from {peer} to {conn.getsockname()}")
                conn.close()


def _is_loopback(address: Any) -> bool:
    return not address or ipaddress.ip_address(address.ip).is_loopback


class SocketWatch:
    """Samples the inet sockets of the appliance's whole process tree until stopped."""

    def __init__(self, root_pid: int) -> None:
        self.root = psutil.Process(root_pid)
        self.foreign: set[str] = set()
        self.processes: dict[int, str] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            time.sleep(SAMPLE_EVERY_S)

    def sample(self) -> None:
        with contextlib.suppress(psutil.NoSuchProcess):
            tree = [self.root, *self.root.children(recursive=True)]
        for process in tree:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                self.processes.setdefault(process.pid, " ".join(process.cmdline())[:160])
                for conn in process.net_connections(kind="inet"):
                    if not (_is_loopback(conn.laddr) and _is_loopback(conn.raddr)):
                        self.foreign.add(f"pid {process.pid} ({self.processes[process.pid][:60]}): "
                                         f"{conn.laddr} -> {conn.raddr or '-'} {conn.status}")
        self.samples += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sample()


def every_modality(client: httpx.Client, image_size: str) -> dict[str, Any]:
    """One request per modality; each result is (status, a fact about the answer that shows it is real)."""
    results: dict[str, Any] = {}
    hello = [{"role": "user", "content": "Hello"}]
    embed = client.post("/v1/inference/embed", json={"model": "openai/text-embedding-3-small", "input": ["hi"]})
    results["embedding"] = [embed.status_code, len(embed.json()["data"]["data"][0]["embedding"])
                            if embed.status_code == 200 else embed.text[:300]]
    for name, slug in (("chat-vllm", "scailabs/poolnoodle-omni"), ("chat-transformers", "scailabs/tiny-chat")):
        chat = _retrying(lambda slug=slug: client.post("/v1/inference/chat", json={
            "model": slug, "messages": hello, "max_tokens": 4}))
        results[name] = [chat.status_code, chat.json()["data"]["choices"][0]["finish_reason"]
                         if chat.status_code == 200 else chat.text[:300]]
    image = client.post("/v1/inference/images/generate", json={"model": "stability/sd-xl", "prompt": "a nook",
                                                               "size": image_size, "n": 1})
    media = client.get(image.json()["data"]["data"][0]["url"]) if image.status_code == 200 else image
    results["image"] = [media.status_code, media.content[:4] == b"\x89PNG" if media.status_code == 200
                        else media.text[:300]]
    clip = encode(tone(1.0), 16000, "wav")
    heard = client.post("/v1/inference/audio/transcribe", data={"model": "whisper-1"},
                        files={"file": ("clip.wav", clip, "audio/wav")})
    results["transcription"] = [heard.status_code, heard.text[:80] if heard.status_code != 200 else "text"]
    speech = client.post("/v1/inference/audio/synthesize", json={"model": "tts-1", "input": "Hello there.",
                                                                 "voice": "alloy", "response_format": "wav"})
    results["speech"] = [speech.status_code, len(speech.content)]
    return results


def _retrying(call: Any, attempts: int = 60) -> httpx.Response:
    """An on-demand model answers MODEL_UNAVAILABLE while it starts; ask again, a bounded number of times."""
    for _ in range(attempts):
        response = call()
        if response.status_code != 503:
            return response
        time.sleep(2)
    return response


def control(traps: Traps) -> list[str]:
    """What the traps catch of a process that does call out (the hub by name): proof that they would see it."""
    subprocess.run([sys.executable, "-c", "import urllib.request as u; u.urlopen('https://huggingface.co', timeout=5)"],
                   capture_output=True, timeout=60)
    time.sleep(0.5)
    caught, traps.hits[:] = list(traps.hits), []
    return caught


def missing_path(python: str, state: Path) -> dict[str, Any]:
    """`appliance serve` on a catalogue whose path is absent: it must name the path and stop."""
    absent = state / "no-such-model"
    catalogue = state / "missing.toml"
    catalogue.write_text(f'[[model]]\nslug = "acme/gone"\nmodality = "embedding"\n'
                         f'engine = "sentence-transformers"\npath = "{absent}"\n')
    result = subprocess.run([python, "-m", "appliance.cli", "serve", "--config", str(catalogue), "--state-dir",
                             str(state / "missing-state"), "--port", "0"], capture_output=True, text=True,
                            timeout=120)
    return {"path": str(absent), "returncode": result.returncode, "stderr": result.stderr[-2000:]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--catalogue", required=True, type=Path)
    parser.add_argument("--state", required=True, type=Path)
    parser.add_argument("--report", required=True, type=Path)
    parser.add_argument("--python", default=sys.executable, help="the appliance's interpreter")
    parser.add_argument("--image-size", default="256x256")
    args = parser.parse_args()
    route_everything_to_loopback()
    traps = Traps()
    report: dict[str, Any] = {"interfaces": sorted(name for _, name in socket.if_nameindex()),
                              "control": control(traps)}
    with start_appliance(args.catalogue, args.state, wait=False, python=args.python) as running:
        watch = SocketWatch(running.process.pid)
        try:
            running.wait_ready(timeout=600)
            with running.client(running.create_key(), timeout=300) as client:
                report["responses"] = every_modality(client, args.image_size)
            time.sleep(LINGER_S)
        finally:
            watch.stop()
            report["log_tail"] = running.log()[-3000:]
    report.update(foreign_sockets=sorted(watch.foreign), processes=sorted(watch.processes.values()),
                  samples=watch.samples, missing_path=missing_path(args.python, args.state))
    time.sleep(0.5)  # a datagram sent at the very end still reaches the trap
    report["trap_hits"] = traps.hits
    args.report.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
