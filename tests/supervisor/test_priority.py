"""An engine's busy-polling processes run at a lower CPU priority: every thread of them, nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.supervisor.priority import lower_priority

STARTED_AT = os.nice(0)  # the family inherits the tests' own priority (CI may run them niced)

# A group leader with two children: one that names itself like vLLM's worker and runs a second thread, one
# named otherwise. Each prints its pid once it is named and its threads run.
FAMILY = r"""
import os, sys, threading, time
def child(name, threads):
    if os.fork() == 0:
        open("/proc/self/comm", "w").write(name)
        for _ in range(threads):
            threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
        print(os.getpid(), flush=True)
        time.sleep(60)
        os._exit(0)
child("VLLM::Worker", 1)
child("helper", 0)
time.sleep(60)
"""


def nice_of_threads(pid: int) -> set[int]:
    return {os.getpriority(os.PRIO_PROCESS, int(tid.name)) for tid in Path(f"/proc/{pid}/task").iterdir()}


def comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


@pytest.fixture
def family() -> Iterator[tuple[int, dict[str, int]]]:
    """The group's id and its children's pids by name."""
    process = subprocess.Popen([sys.executable, "-c", FAMILY], stdout=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        assert process.stdout is not None
        # Each child prints its pid once named, its threads started; two children writing at once can leave a
        # bare line between their numbers.
        pids: list[int] = []
        while len(pids) < 2:
            line = process.stdout.readline()
            assert line, "the family ended before its children said who they are"
            if line.strip():
                pids.append(int(line))
        yield process.pid, {comm(pid): pid for pid in pids}
    finally:
        os.killpg(process.pid, 9)
        process.wait()


def test_every_thread_of_a_matching_process_gets_the_nice_value(family: tuple[int, dict[str, int]]) -> None:
    group, pids = family
    changed = lower_priority(group, ("VLLM::",), 19)
    assert changed == ["VLLM::Worker"]
    assert len(list(Path(f"/proc/{pids['VLLM::Worker']}/task").iterdir())) == 2
    assert nice_of_threads(pids["VLLM::Worker"]) == {19}
    assert nice_of_threads(pids["helper"]) == {STARTED_AT}
    assert nice_of_threads(group) == {STARTED_AT}  # the group's leader (vLLM's HTTP server) keeps its priority


def test_a_process_of_another_group_is_left_alone(family: tuple[int, dict[str, int]]) -> None:
    _group, pids = family
    assert lower_priority(os.getpgid(0), ("VLLM::",), 19) == []
    assert nice_of_threads(pids["VLLM::Worker"]) == {STARTED_AT}


def test_a_priority_is_never_raised(family: tuple[int, dict[str, int]]) -> None:
    group, pids = family
    lower_priority(group, ("VLLM::",), 19)
    lower_priority(group, ("VLLM::",), 5)  # raising it back would need privileges, and undo an operator's choice
    assert nice_of_threads(pids["VLLM::Worker"]) == {19}
