"""A model's pool sends each request to a healthy backend with the fewest requests in flight."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from appliance.backends.pool import BackendPool
from appliance.backends.remote import remote_backend_id
from appliance.backends.transport import Endpoint
from appliance.catalogue import ModelEntry

ENTRY = ModelEntry(slug="acme/embed", modality="embedding", engine="sentence-transformers", path=Path("/m"))


@dataclass(eq=False)
class Stub:
    """A backend's bookkeeping only: the pool decides on it, nothing is sent anywhere."""

    backend_id: str
    up: bool = True
    in_flight: int = 0
    entry: ModelEntry = ENTRY
    endpoint: Endpoint = field(default_factory=lambda: Endpoint("http://127.0.0.1:9/v1", timeout_s=1))
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def is_up(self) -> bool:
        return self.up

    def retry_after_s(self) -> int:
        return 7

    async def failed(self, reason: str) -> None:
        self.up = False

    @contextlib.asynccontextmanager
    async def use(self) -> AsyncIterator[Stub]:
        self.in_flight += 1
        try:
            yield self
        finally:
            self.in_flight -= 1


def test_the_least_busy_healthy_backend_is_chosen() -> None:
    a, b, c = Stub("a", in_flight=3), Stub("b", in_flight=1), Stub("c", up=False)
    pool = BackendPool([a, b, c])
    assert pool.pick() is b
    assert (pool.active_count, pool.total_count) == (2, 3)


def test_equal_backends_take_turns() -> None:
    a, b = Stub("a"), Stub("b")
    pool = BackendPool([a, b])
    assert {pool.pick().backend_id for _ in range(4)} == {"a", "b"}  # type: ignore[union-attr]


def test_a_backend_that_just_failed_is_skipped_and_none_up_is_none() -> None:
    a, b = Stub("a"), Stub("b")
    pool = BackendPool([a, b])
    assert pool.pick(exclude=[a]) is b
    assert pool.pick(exclude=[a, b]) is None
    b.up = a.up = False
    assert pool.pick() is None and pool.retry_after_s() == 7


def test_waiting_for_a_backend_ends_when_one_comes_up_and_counts_as_in_flight() -> None:
    async def scenario() -> None:
        down = Stub("a", up=False)
        pool = BackendPool([down])
        waiting = asyncio.ensure_future(pool.wait_up(30))
        await asyncio.sleep(0.01)
        assert pool.in_flight == 1  # a waiting request keeps the model from being unloaded
        down.up = True
        down.ready.set()
        await asyncio.wait_for(waiting, 5)
        assert pool.in_flight == 0

    asyncio.run(scenario())


def test_a_remote_backend_is_named_by_its_host_port_and_path() -> None:
    assert remote_backend_id("http://10.0.0.5:8000/v1") == "remote:10.0.0.5:8000/v1"
    assert remote_backend_id("https://box2/oai/v1") == "remote:box2/oai/v1"
