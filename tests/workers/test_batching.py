"""The batcher's bound: how many items may wait, and the retry hint given to those it refuses."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import numpy as np
import pytest

from appliance.workers.batching import Batcher, QueueFull


def held_engine() -> tuple[threading.Event, list[int], Callable[[list[int]], np.ndarray]]:
    """An engine call that holds the engine thread until released; records each batch's size."""
    release = threading.Event()
    sizes: list[int] = []

    def run(items: list[int]) -> np.ndarray:
        release.wait(timeout=30)
        sizes.append(len(items))
        return np.asarray(items, dtype=np.float32)

    return release, sizes, run


def test_past_the_bound_a_request_is_refused_and_the_waiting_ones_still_run() -> None:
    release, sizes, run = held_engine()

    async def scenario() -> tuple[list[np.ndarray], QueueFull]:
        batcher: Batcher[int] = Batcher(run, max_batch=100, max_waiting=5)
        running = asyncio.ensure_future(batcher.submit([1]))
        await asyncio.sleep(0.05)  # taken into a batch: the engine holds it, nothing waits
        waiting = [asyncio.ensure_future(batcher.submit([2, 3, 4])), asyncio.ensure_future(batcher.submit([5, 6]))]
        await asyncio.sleep(0)
        assert batcher.waiting == 5
        with pytest.raises(QueueFull) as refused:
            await batcher.submit([7])
        release.set()
        return await asyncio.gather(running, *waiting), refused.value

    results, refused = asyncio.run(scenario())
    assert [r.tolist() for r in results] == [[1.0], [2.0, 3.0, 4.0], [5.0, 6.0]]
    assert refused.waiting == 5 and refused.retry_after_s >= 1
    assert sizes == [1, 5]  # the two waiting requests went together


def test_a_request_larger_than_the_bound_gets_in_when_nothing_waits() -> None:
    release, _sizes, run = held_engine()
    release.set()

    async def scenario() -> np.ndarray:
        batcher: Batcher[int] = Batcher(run, max_batch=4, max_waiting=2)
        return await batcher.submit(list(range(10)))

    assert asyncio.run(scenario()).tolist() == list(map(float, range(10)))


def test_the_retry_hint_is_the_waiting_items_at_the_measured_pace() -> None:
    batcher: Batcher[int] = Batcher(lambda items: np.zeros(len(items)))
    assert batcher.retry_after_s() == 1  # nothing measured yet
    batcher._measure(items=100, seconds=2.0)  # 20 ms an item
    batcher.waiting = 400
    assert batcher.retry_after_s() == 8
    batcher.waiting = 1
    assert batcher.retry_after_s() == 1  # never 0: a client must wait a little


def test_a_small_request_behind_a_huge_one_is_in_the_next_batch_not_after_all_of_it() -> None:
    calls: list[list[int]] = []

    def run(items: list[int]) -> np.ndarray:
        calls.append(items)
        return np.array(items, dtype=np.float32).reshape(-1, 1)

    async def scenario() -> tuple[np.ndarray, np.ndarray, int]:
        batcher: Batcher[int] = Batcher(run, max_batch=8)
        huge = asyncio.ensure_future(batcher.submit(list(range(1000, 1100))))  # 100 items: 13 batches alone
        await asyncio.sleep(0)
        small = await batcher.submit([7])
        done_when_small_was = len(calls)
        return await huge, small, done_when_small_was

    huge, small, batches_before = asyncio.run(scenario())
    assert small.tolist() == [[7.0]] and huge[:, 0].tolist() == list(range(1000, 1100))  # each its own rows, in order
    huge_items_first = sum(1 for items in calls[:batches_before] for item in items if item >= 1000)
    assert huge_items_first <= 16  # a slice or two of the huge one ran first, not all 100 of its items
    assert all(len(items) <= 8 for items in calls)


def test_a_request_of_no_items_gets_no_rows_and_hangs_nobody() -> None:
    def run(items: list[int]) -> np.ndarray:
        return np.array(items, dtype=np.float32).reshape(-1, 1)

    async def scenario() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        batcher: Batcher[int] = Batcher(run, max_batch=4)
        alone = await asyncio.wait_for(batcher.submit([]), 10)
        beside = await asyncio.wait_for(asyncio.gather(batcher.submit([1, 2, 3, 4, 5]), batcher.submit([])), 10)
        return alone, *beside

    alone, full, empty = asyncio.run(scenario())
    assert alone.shape == (0, 1) and empty.shape == (0, 1) and full[:, 0].tolist() == [1, 2, 3, 4, 5]


def test_in_arrival_order_a_small_request_waits_for_everything_queued_before_it() -> None:
    calls: list[list[int]] = []

    def run(items: list[int]) -> np.ndarray:
        calls.append(items)
        return np.array(items, dtype=np.float32).reshape(-1, 1)

    async def scenario() -> int:
        batcher: Batcher[int] = Batcher(run, max_batch=8, fair=False)  # what fair share is measured against
        huge = asyncio.ensure_future(batcher.submit(list(range(1000, 1100))))
        await asyncio.sleep(0)
        small = await batcher.submit([7])
        assert small.tolist() == [[7.0]]
        batches_before = len(calls)
        await huge
        return batches_before

    batches_before = asyncio.run(scenario())
    assert sum(1 for items in calls[:batches_before] for item in items if item >= 1000) == 100
