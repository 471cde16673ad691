"""Dynamic batching: concurrent requests' items (texts, query–document pairs) coalesced into one engine call."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
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
    taken: int = 0  # items put into a batch so far
    rows: list[Any] = field(default_factory=list)  # the engine's rows for them, batch by batch
    answered: int = 0  # items whose rows came back

    @property
    def left(self) -> int:
        return len(self.items) - self.taken


class Batcher(Generic[Item]):
    """Coalesces concurrent requests into ``run`` calls on the engine thread, fairly.

    While one batch runs, new requests queue up; the next batch takes from every
    request waiting, in turn, an equal slice of its ``max_batch`` items, so one
    request of 10,000 texts takes a slice of each batch rather than every batch:
    a small request that arrives behind it is in the next one. Requests that
    leave room give it to the others. Optionally a batch waits ``max_wait_s`` for
    more; idle, a lone request goes at once. With ``max_waiting``, a request that
    would make more items wait than that is refused with ``QueueFull``, unless
    nothing waits (so one request of any allowed size always gets in).

    ``fair`` False takes the items in arrival order instead (first come, first
    served: a small request waits for every item queued before it), the order
    before fair share, kept to measure it against (bench/fairness.py --embed).
    """

    def __init__(self, run: Callable[[list[Item]], np.ndarray], max_batch: int = 64, max_wait_s: float = 0.0,
                 max_waiting: int | None = None, fair: bool = True) -> None:
        self._run_batch = run
        self.fair = fair
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_waiting = max_waiting
        self.waiting = 0  # items queued, not yet taken into a batch
        self._seconds_per_item: float | None = None  # measured, smoothed: what a Retry-After is estimated from
        self._queue: asyncio.Queue[_Pending[Item]] = asyncio.Queue()
        self._active: deque[_Pending[Item]] = deque()  # requests with items not yet taken, in turn order
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

    async def _gather(self) -> None:
        """Take in the requests that arrived (waiting for a first one, and ``max_wait_s`` for more when idle)."""
        if not self._active:
            self._active.append(await self._queue.get())
            deadline = asyncio.get_running_loop().time() + self.max_wait_s
            while self.max_wait_s > 0 and sum(p.left for p in self._active) < self.max_batch:
                timeout = deadline - asyncio.get_running_loop().time()
                if timeout <= 0:
                    break
                try:
                    self._active.append(await asyncio.wait_for(self._queue.get(), timeout))
                except TimeoutError:
                    break
        while not self._queue.empty():
            self._active.append(self._queue.get_nowait())

    def _next_batch(self) -> list[tuple[_Pending[Item], int, int]]:
        """Slices ``(request, start, end)`` of the requests in turn, an equal share each, room passed on."""
        for gone in [p for p in self._active if p.future.done()]:  # its client left: its items need no engine
            self._active.remove(gone)
            self.waiting -= gone.left
        room = self.max_batch
        # A request of no items rides along: the batch's rows, none of them (and an engine run of none if alone).
        slices: list[tuple[_Pending[Item], int, int]] = [(p, 0, 0) for p in self._active if not p.items]
        while room and any(p.left for p in self._active):
            wanting = [p for p in self._active if p.left]
            share = max(1, room // len(wanting)) if self.fair else room
            for pending in wanting:
                take = min(share, pending.left, room)
                if take:
                    slices.append((pending, pending.taken, pending.taken + take))
                    pending.taken += take
                    room -= take
                    self.waiting -= take
        self._active = deque(p for p in self._active if p.left)  # all taken: it only waits for its rows now
        if self.fair:
            self._active.rotate(-1)  # the next batch starts with the next request
        return slices

    def _measure(self, items: int, seconds: float) -> None:
        pace = seconds / max(items, 1)
        self._seconds_per_item = pace if self._seconds_per_item is None else 0.8 * self._seconds_per_item + 0.2 * pace

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._gather()
            slices = self._next_batch()
            items = [item for pending, start, end in slices for item in pending.items[start:end]]
            log.debug("running a batch of %d items from %d requests", len(items), len({id(s[0]) for s in slices}))
            started = time.perf_counter()
            try:
                rows: Any = await loop.run_in_executor(self._engine, self._run_batch, items)
            except Exception as exc:  # the engine failed: every request in the batch learns why
                log.exception("the engine failed on a batch of %d items", len(items))
                for pending, _start, _end in slices:
                    if not pending.future.done():
                        pending.future.set_exception(exc)
                    if pending in self._active:
                        self._active.remove(pending)
                        self.waiting -= pending.left
                continue
            self._measure(len(items), time.perf_counter() - started)
            offset = 0
            for pending, start, end in slices:
                pending.rows.append(rows[offset:offset + end - start])
                pending.answered += end - start
                offset += end - start
                if pending.answered == len(pending.items) and not pending.future.done():
                    whole = pending.rows[0] if len(pending.rows) == 1 else np.concatenate(pending.rows)
                    pending.future.set_result(whole)
