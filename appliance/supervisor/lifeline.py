"""The pipe every engine's guard watches: the gateway holds its only writing end, so however the gateway dies
(SIGKILL of its whole process group included) the kernel closes that end and each guard reads end-of-file."""

from __future__ import annotations

import os

_pipe: tuple[int, int, int] | None = None  # (owning pid, read end, write end)


def lifeline_fd() -> int:
    """The reading end, to pass to a guard (pass_fds); the writing end stays open in this process alone."""
    global _pipe
    if _pipe is None or _pipe[0] != os.getpid():
        read_end, write_end = os.pipe()  # both close-on-exec: no other child inherits the writing end
        _pipe = (os.getpid(), read_end, write_end)
    return _pipe[1]
