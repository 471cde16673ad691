"""A guard between the gateway and one engine process: engines never outlive the gateway.

Run as ``python -m appliance.supervisor.reaper PARENT_PID -- CMD...``. The
kernel sends this guard SIGTERM when the gateway dies, even by SIGKILL
(PR_SET_PDEATHSIG); the guard then ends the engine's whole process group, which
also catches the helper processes an engine spawns (vLLM's engine core).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from types import FrameType

PR_SET_PDEATHSIG = 1
GRACE_S = 10


def set_parent_death_signal(signum: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def _kill_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def main(argv: list[str]) -> int:
    parent, separator, *command = argv
    if separator != "--" or not command:
        print("usage: python -m appliance.supervisor.reaper PARENT_PID -- CMD...", file=sys.stderr)
        return 2
    set_parent_death_signal(signal.SIGTERM)
    if os.getppid() != int(parent):  # the gateway died before the line above
        return 1
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
    code = child.wait()
    _kill_group(child.pid, signal.SIGKILL)  # whatever the engine left behind
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
