"""A guard between the gateway and one engine process: nothing an engine starts outlives the gateway.

Run as ``python -m appliance.supervisor.reaper LIFELINE_FD -- CMD...``, in a session of its own (the
gateway starts it so): killing the gateway's whole process group, even with SIGKILL, does not kill the
guard with it. The guard sees the gateway die however it dies, twice over: the lifeline, a pipe whose
only writer is the gateway, reads end-of-file, and the kernel sends SIGTERM (PR_SET_PDEATHSIG). It then
ends the engine's whole process group (vLLM's engine core and its workers are in it): SIGTERM, then
SIGKILL after a grace period, for engines that ignore SIGTERM. As a child subreaper it also adopts what
leaves the group and is orphaned, and kills that too. The engine gets SIGKILL if the guard itself dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
GRACE_S = 10
LAST_SWEEP_S = 5.0  # bound on killing what is left at the end


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


def set_parent_death_signal(signum: int) -> None:
    _prctl(PR_SET_PDEATHSIG, signum)


def _kill_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _children() -> list[int]:
    """This process's children (the engine, and orphans it adopted as a subreaper)."""
    found: list[int] = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        with contextlib.suppress(OSError):
            found += [int(pid) for pid in (task / "children").read_text().split()]
    return found


def _reap() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def end_everything(engine_group: int) -> None:
    """SIGKILL the engine's group and every process left below the guard, until none is (bounded)."""
    deadline = time.monotonic() + LAST_SWEEP_S
    while True:
        _kill_group(engine_group, signal.SIGKILL)
        left = _children()
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _reap()
        if not left or time.monotonic() > deadline:
            return
        time.sleep(0.05)


def _watch_lifeline(fd: int) -> None:
    """Block until the gateway's end of the pipe closes (it died, or closed it), then stop the engine."""
    with contextlib.suppress(OSError):
        while os.read(fd, 1):
            pass
    os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str]) -> int:
    lifeline, separator, *command = argv
    if separator != "--" or not command or not lifeline.isdigit():
        print("usage: python -m appliance.supervisor.reaper LIFELINE_FD -- CMD...", file=sys.stderr)
        return 2
    set_parent_death_signal(signal.SIGTERM)
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    # The engine leads a group of its own and does not inherit the lifeline (close_fds). A gateway that died
    # before this point is seen by the lifeline at once.
    child = subprocess.Popen(command, start_new_session=True,
                             preexec_fn=lambda: set_parent_death_signal(signal.SIGKILL))

    def stop(_signum: int, _frame: FrameType | None) -> None:
        _kill_group(child.pid, signal.SIGTERM)
        signal.alarm(GRACE_S)

    def force(_signum: int, _frame: FrameType | None) -> None:
        _kill_group(child.pid, signal.SIGKILL)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGALRM, force)
    threading.Thread(target=_watch_lifeline, args=(int(lifeline),), daemon=True).start()
    code = child.wait()
    end_everything(child.pid)  # whatever the engine left behind, in its group or adopted
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
