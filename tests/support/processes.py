"""Finding an appliance's worker processes, for the tests that kill them."""

from __future__ import annotations

import time

import psutil


def descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def engine_process(appliance_pid: int, worker_module: str) -> psutil.Process:
    """The engine process (not its guard) running ``worker_module`` under the appliance."""
    for proc in descendants(appliance_pid):
        cmdline = proc.cmdline()
        if worker_module in cmdline and "appliance.supervisor.reaper" not in cmdline:
            return proc
    raise LookupError(f"no {worker_module} process under {appliance_pid}")


def alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_gone(procs: list[psutil.Process], timeout: float = 30) -> list[psutil.Process]:
    """Wait until every process has ended; returns those still alive after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in procs if alive(p)]
        if not left:
            return []
        time.sleep(0.2)
    return [p for p in procs if alive(p)]
