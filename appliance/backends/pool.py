"""A model's backends — local replicas or remote servers — and the choice of one for each request."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from appliance.backends.transport import Endpoint
from appliance.catalogue import ModelEntry


class Backend(Protocol):
    """What the gateway needs of any backend, local or remote."""

    entry: ModelEntry
    backend_id: str  # what X-Scaigrid-Backend shows: "ENGINE:NAME" locally, "remote:HOST:PORT/PATH" remotely
    endpoint: Endpoint
    in_flight: int
    ready: asyncio.Event  # set while it takes requests

    def is_up(self) -> bool: ...

    def retry_after_s(self) -> int: ...

    async def failed(self, reason: str) -> None:
        """A request could not reach it: take it out of rotation until it proves healthy again."""

    def use(self) -> AbstractAsyncContextManager[object]: ...


class BackendPool:
    """The backends of one model; each request goes to a healthy one with the fewest requests in flight."""

    def __init__(self, backends: Sequence[Backend]) -> None:
        self.backends = list(backends)
        self.waiting = 0  # requests waiting for a backend to come up
        self.background = 0  # of those in flight: the gateway's own calls (batch lines), not live traffic
        self._turn = 0  # breaks ties in turn, so equal backends share an idle load too

    @property
    def active_count(self) -> int:
        return sum(backend.is_up() for backend in self.backends)

    @property
    def total_count(self) -> int:
        return len(self.backends)

    @property
    def in_flight(self) -> int:
        return self.waiting + sum(backend.in_flight for backend in self.backends)

    @property
    def live(self) -> int:
        """Live requests waiting for or in flight on this model."""
        return max(0, self.in_flight - self.background)

    @contextlib.contextmanager
    def background_call(self) -> Iterator[None]:
        """Count a call of the gateway's own (a batch line) for as long as it runs, so it is not live traffic."""
        self.background += 1
        try:
            yield
        finally:
            self.background -= 1

    def pick(self, exclude: Iterable[Backend] = ()) -> Backend | None:
        """A healthy backend not in ``exclude`` with the fewest requests in flight, or None."""
        skipped = list(exclude)
        up = [b for b in self.backends if b.is_up() and all(b is not s for s in skipped)]
        if not up:
            return None
        least = min(b.in_flight for b in up)
        candidates = [b for b in up if b.in_flight == least]
        self._turn += 1
        return candidates[self._turn % len(candidates)]

    async def wait_up(self, timeout: float) -> None:
        """Return when any backend is up, or after ``timeout`` seconds."""
        if any(b.is_up() for b in self.backends) or timeout <= 0:
            return
        waiters = [asyncio.ensure_future(b.ready.wait()) for b in self.backends]
        self.waiting += 1
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.waiting -= 1
            for waiter in waiters:
                waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*waiters, return_exceptions=True)

    def retry_after_s(self) -> int:
        return min((b.retry_after_s() for b in self.backends), default=30)
