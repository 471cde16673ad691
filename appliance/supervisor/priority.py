"""A lower CPU priority for an engine's processes that busy-poll between steps.

vLLM's engine core and its worker spin on shared memory for a second after
each message (``sched_yield`` in a loop), so under load they hold every core
they can get. On a box with few cores the gateway and vLLM's own HTTP server,
which carry each request to them, then wait for a time slice: measured on two
cores, a batch ran at 34–143 lines/s with them at nice 0 and 205–231 at nice 19
(docs/benchmarks.md). At nice 19 they still get every cycle nobody else wants.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

PROC = Path("/proc")


def _group_and_name(pid: str) -> tuple[int, str] | None:
    try:
        stat = (PROC / pid / "stat").read_text()
    except OSError:
        return None
    name = stat[stat.index("(") + 1:stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[2]), name  # process group, and the name the process gave itself


def lower_priority(group: int, names: tuple[str, ...], nice: int) -> list[str]:
    """Set every thread of the processes in ``group`` whose name starts with one of ``names`` to ``nice``
    (never raising a priority); the names of the processes changed."""
    changed = []
    for pid in (entry.name for entry in PROC.iterdir() if entry.name.isdigit()):
        seen = _group_and_name(pid)
        if seen is None or seen[0] != group or not seen[1].startswith(names):
            continue
        with contextlib.suppress(OSError):  # a thread or the process ended meanwhile
            for tid in (PROC / pid / "task").iterdir():
                with contextlib.suppress(OSError):
                    if os.getpriority(os.PRIO_PROCESS, int(tid.name)) < nice:  # per thread on Linux
                        os.setpriority(os.PRIO_PROCESS, int(tid.name), nice)
            changed.append(_full_name(pid, seen[1]))
    return changed


def _full_name(pid: str, name: str) -> str:
    """The name uncut (the kernel keeps 15 characters; vLLM's title, VLLM::EngineCore, is in the command line)."""
    with contextlib.suppress(OSError):
        title = (PROC / pid / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        if title.startswith(name):
            return title
    return name
