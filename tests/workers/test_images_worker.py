"""The image worker's own rules, without the engine: the one-at-a-time queue and the safety filter."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from appliance.workers.images import GenerationQueue, blocked_term, option_map, pin_to_cpus
from appliance.workers.server import WorkerError


def test_one_runs_and_max_waiting_wait_the_rest_are_refused() -> None:
    async def scenario() -> list[str]:
        queue = GenerationQueue(max_waiting=1)
        order: list[str] = []
        release = asyncio.Event()

        async def job(name: str) -> None:
            async with queue.turn():
                order.append(f"start {name}")
                await release.wait()
                order.append(f"end {name}")

        first = asyncio.create_task(job("a"))
        await asyncio.sleep(0)
        second = asyncio.create_task(job("b"))
        await asyncio.sleep(0)
        assert queue.pending == 2 and order == ["start a"]
        with pytest.raises(WorkerError) as refused:
            async with queue.turn():
                pass
        assert refused.value.status_code == 429
        release.set()
        await asyncio.gather(first, second)
        assert queue.pending == 0
        return order

    assert asyncio.run(scenario()) == ["start a", "end a", "start b", "end b"]


def test_blocked_terms_match_whole_words_whatever_the_case() -> None:
    assert blocked_term("A Forbidden thing", ["forbidden"]) == "forbidden"
    assert blocked_term("unforbiddenly calm", ["forbidden"]) is None
    assert blocked_term("two words here", ["two words"]) == "two words"
    assert blocked_term("anything", []) is None


def test_option_maps_merge_over_the_defaults() -> None:
    assert option_map({"steps": {"hd": 60}}, "steps", {"standard": 30, "hd": 50}) == {"standard": 30, "hd": 60}
    with pytest.raises(ValueError, match="engine_options.steps"):
        option_map({"steps": 30}, "steps", {"standard": 30})


def test_cpus_pin_the_worker_and_default_its_threads_to_one_per_core() -> None:
    cores = sorted(os.sched_getaffinity(0))  # all of them: pinning to those changes nothing for the test run
    options: dict[str, object] = {"cpus": cores}
    pin_to_cpus(options)
    assert options["threads"] == len(cores) and sorted(os.sched_getaffinity(0)) == cores
    kept = {"cpus": cores, "threads": 7}
    pin_to_cpus(kept)
    assert kept["threads"] == 7


@pytest.mark.parametrize("cpus", ["1", [1.5], [-1], {"a": 1}])
def test_cpus_must_be_a_list_of_core_numbers(cpus: object) -> None:
    with pytest.raises(ValueError, match="engine_options.cpus"):
        pin_to_cpus({"cpus": cpus})


def test_nice_lowers_the_workers_cpu_priority() -> None:
    probe = ("import os; from appliance.workers.images import lower_priority; before = os.nice(0); "
             "lower_priority({'nice': 5}); print(os.nice(0) - before)")
    # In a child process: a lowered priority cannot be raised again without privileges.
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "5"
