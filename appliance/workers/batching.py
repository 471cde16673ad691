"""Dynamic batching: concurrent requests' items (texts, query–document pairs) coalesced into one engine call."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np

log = logging.getLogger("appliance.worker.batching")

Item = TypeVar("Item")


class QueueFull(Exception):
    """The batcher holds as many waiting items as it may; ``retry_after_s`` is how long they take to drain."""

    def __init__(self, waiting: int, retry_after_s: int) -> None:
        super().__init__(f"{waiting} items are waiting")
        self.waiting = waiting
        self.retry_after_s = retry_after_s


@dataclass
class _Pending(Generic[Item]):
    items: list[Item]
    future: asyncio.Future[np.ndarray] = field(repr=False)


class Batcher(Generic[Item]):
    """Coalesces concurrent requests into one ``run`` call on the engine thread.

    While one batch runs, new requests queue up; the next batch takes all of
    them (up to ``max_batch`` items; a larger request goes whole, alone),
    optionally waiting ``max_wait_s`` for more. Idle, a lone request goes at
    once. With ``max_waiting``, a request that would make more items wait than
    that is refused with ``QueueFull``, unless nothing waits (so one request of
    any allowed size always gets in).
    """

    def __init__(self, run: Callable[[list[Item]], np.ndarray], max_batch: int = 64, max_wait_s: float = 0.0,
                 max_waiting: int | None = None) -> None:
        self._run_batch = run
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_waiting = max_waiting
        self.waiting = 0  # items queued, not yet taken into a batch
        self._seconds_per_item: float | None = None  # measured, smoothed: what a Retry-After is estimated from
        self._queue: asyncio.Queue[_Pending[Item]] = asyncio.Queue()
        self._engine = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine")
        self._task: asyncio.Task[None] | None = None

    async def submit(self, items: list[Item]) -> np.ndarray:
        """The engine's rows for ``items``, in order; raises ``QueueFull`` when the queue is at its bound."""
        if self.max_waiting is not None and self.waiting and self.waiting + len(items) > self.max_waiting:
            raise QueueFull(self.waiting, self.retry_after_s())
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self.waiting += len(items)
        self._queue.put_nowait(_Pending(items, future))
        return await future

    def retry_after_s(self) -> int:
        """Whole seconds until what waits now has run, at the measured pace (1 before anything ran)."""
        if self._seconds_per_item is None:
            return 1
        return max(1, math.ceil(self.waiting * self._seconds_per_item))

    def _take(self, pending: _Pending[Item]) -> _Pending[Item]:
        self.waiting -= len(pending.items)
        return pending

    async def _next_batch(self) -> list[_Pending[Item]]:
        batch = [self._take(await self._queue.get())]
        size = len(batch[0].items)
        deadline = asyncio.get_running_loop().time() + self.max_wait_s
        while size < self.max_batch:
            try:
                if self._queue.empty() and self.max_wait_s > 0:
                    timeout = deadline - asyncio.get_running_loop().time()
                    if timeout <= 0:
                        break
                    item = await asyncio.wait_for(self._queue.get(), timeout)
                else:
                    item = self._queue.get_nowait()
            except (asyncio.QueueEmpty, TimeoutError):
                break
            batch.append(self._take(item))
            size += len(item.items)
        return batch

    def _measure(self, items: int, seconds: float) -> None:
        pace = seconds / max(items, 1)
        self._seconds_per_item = pace if self._seconds_per_item is None else 0.8 * self._seconds_per_item + 0.2 * pace

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            items = [item for pending in batch for item in pending.items]
            log.debug("running a batch of %d items from %d requests", len(items), len(batch))
            started = time.perf_counter()
            try:
                rows: Any = await loop.run_in_executor(self._engine, self._run_batch, items)
            except Exception as exc:  # the engine failed: every request of the batch learns why
                log.exception("the engine failed on a batch of %d items", len(items))
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(exc)
                continue
            self._measure(len(items), time.perf_counter() - started)
            start = 0
            for pending in batch:
                end = start + len(pending.items)
                if not pending.future.done():
                    pending.future.set_result(rows[start:end])
                start = end
