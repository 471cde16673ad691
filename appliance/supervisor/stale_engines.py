"""Engines a previous gateway of this state directory left running, found and stopped at start.

Every engine process (its guard, the engine and whatever the engine starts, which inherit the
environment) carries ``APPLIANCE_ENGINE_OWNER=<gateway pid>:<its start time>:<state dir>``. At start,
a process marked with this state directory whose gateway no longer exists (no process with that pid
and start time) is a leftover holding memory, a GPU or a socket name: it gets SIGKILL (vLLM's engine
core was seen ignoring SIGTERM). Engines of other state directories, and of a gateway still running
on this one, are left alone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

OWNER_ENV = "APPLIANCE_ENGINE_OWNER"
PROC = Path("/proc")
GONE_WAIT_S = 10.0


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (with the pid, unique while the box runs)."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()[19]


def owner_mark(state_dir: Path) -> str:
    """The value engines of this gateway carry in OWNER_ENV."""
    return f"{os.getpid()}:{_start_time(os.getpid())}:{state_dir.resolve()}"


def _owner(pid: int) -> str | None:
    try:
        environ = (PROC / str(pid) / "environ").read_bytes()
    except OSError:  # gone, or another user's
        return None
    prefix = f"{OWNER_ENV}=".encode()
    for variable in environ.split(b"\0"):
        if variable.startswith(prefix):
            return variable[len(prefix):].decode(errors="replace")
    return None


def stale_engines(state_dir: Path) -> list[int]:
    """Processes marked as engines of ``state_dir`` whose gateway is gone."""
    ours = str(state_dir.resolve())
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        mark = _owner(int(entry.name))
        if mark is None or mark.count(":") < 2:
            continue
        gateway, started, directory = mark.split(":", 2)
        if directory == ours and not (gateway.isdigit() and _start_time(int(gateway)) == started):
            found.append(int(entry.name))
    return found


def stop_stale_engines(state_dir: Path) -> list[int]:
    """SIGKILL every stale engine process of ``state_dir``; returns their pids once they are gone (bounded)."""
    pids = stale_engines(state_dir)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + GONE_WAIT_S
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.05)
    return pids


def _alive(pid: int) -> bool:
    """Still a process that is not a zombie (a killed orphan waits for init to reap it)."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] != "Z"
