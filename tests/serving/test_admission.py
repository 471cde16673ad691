"""The order in which a full model admits live calls: fair across tenants, then across a tenant's users and keys.

Saturation here is a FAKE: calls hold their slots until the test lets them go, so
the order is checked without racing real engines against a clock (the e2e test,
tests/e2e/test_fair_share.py, shows the same order on the real vLLM engine).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from types import SimpleNamespace

import pytest

from appliance.catalogue import ModelEntry
from appliance.serving.admission import OVER_SHARE_PRIORITY, Admission, Share
from appliance.serving.errors import ApiError, ClientGone, ErrorCode

ENTRY = ModelEntry(slug="acme/chat", modality="chat", engine="remote", url="http://127.0.0.1:9/v1")


def call_of(tenant: str, user: str | None = None, background: bool = False,
            gone: Callable[[], Awaitable[None]] | None = None) -> SimpleNamespace:
    """What admission reads of a call: its tenant, user or key, whether it is the gateway's own, its record, how it
    learns that its client left."""
    return SimpleNamespace(tenant_id=tenant, caller=SimpleNamespace(user_id=user), key=SimpleNamespace(id=f"key_{user}"),
                           background=background, fields={}, gone=gone)


class Box:
    """An admission queue of ``capacity`` slots and the calls the test started, each held until released."""

    def __init__(self, capacity: int, shares: dict[str, Share] | None = None, waiting_at_most: int = 100,
                 timeout_s: float = 30) -> None:
        self.admission = Admission()
        self.capacity, self.shares, self.waiting_at_most, self.timeout_s = capacity, shares or {}, waiting_at_most, \
            timeout_s
        self.order: list[str] = []  # who was admitted, in order
        self.release: dict[str, asyncio.Event] = {}
        self.tasks: list[asyncio.Task[None]] = []

    def start(self, name: str, tenant: str, user: str | None = None,
              gone: Callable[[], Awaitable[None]] | None = None) -> asyncio.Task[None]:
        call = call_of(tenant, user, gone=gone)
        self.release[name] = asyncio.Event()

        async def run() -> None:
            share = self.shares.get(tenant, Share())
            async with self.admission.admitted(call, ENTRY, self.capacity, share, self.timeout_s,  # type: ignore
                                               self.waiting_at_most):
                self.order.append(name)
                await self.release[name].wait()

        task = asyncio.get_running_loop().create_task(run())
        self.tasks.append(task)
        return task

    async def settle(self) -> None:
        for _ in range(5):
            await asyncio.sleep(0)

    async def finish(self, name: str) -> None:
        self.release[name].set()
        await self.settle()


def test_a_model_with_room_admits_at_once_and_queues_nothing() -> None:
    async def scenario() -> None:
        box = Box(capacity=2)
        box.start("a1", "acme")
        await box.settle()
        assert box.order == ["a1"] and not box.admission.queues["acme/chat"].waiting
        await box.finish("a1")

    asyncio.run(scenario())


def test_a_quiet_tenant_goes_before_a_noisy_tenants_queue() -> None:
    async def scenario() -> None:
        box = Box(capacity=2)
        for n in range(8):
            box.start(f"noisy{n}", "noisy")
        await box.settle()
        box.start("quiet", "quiet")
        await box.settle()
        assert box.order == ["noisy0", "noisy1"]  # full: the rest wait
        await box.finish("noisy0")
        assert box.order[2] == "quiet"  # the next free slot is the quiet tenant's, not the flood's
        await box.finish("noisy1")
        assert box.order[3] == "noisy2"
        for name in list(box.release):
            box.release[name].set()
        await asyncio.gather(*box.tasks)

    asyncio.run(scenario())


def test_first_come_first_served_when_fair_share_is_off() -> None:
    async def scenario() -> None:
        box = Box(capacity=1)
        box.admission.enabled = False  # no admission at all: every call goes straight to the engine's own queue
        box.start("noisy0", "noisy")
        box.start("quiet", "quiet")
        await box.settle()
        assert box.order == ["noisy0", "quiet"]
        for name in list(box.release):
            box.release[name].set()
        await asyncio.gather(*box.tasks)

    asyncio.run(scenario())


def test_a_tenant_arriving_during_a_flood_starts_at_once_in_the_headroom() -> None:
    async def scenario() -> None:
        box = Box(capacity=8)  # one slot of 8 is kept from the tenant holding the most
        for n in range(20):
            box.start(f"noisy{n}", "noisy")
        await box.settle()
        assert len(box.order) == 7 and box.admission.queues["acme/chat"].queued == 13
        box.start("quiet", "quiet")
        await box.settle()
        assert box.order[-1] == "quiet"  # no noisy call had to end first
        for name in list(box.release):
            box.release[name].set()
        await asyncio.gather(*box.tasks)

    asyncio.run(scenario())


def test_weights_share_the_slots_and_a_minimum_goes_first() -> None:
    async def scenario() -> None:
        box = Box(capacity=1, shares={"big": Share(weight=3.0), "small": Share(weight=1.0),
                                      "guaranteed": Share(weight=1.0, min_concurrency=1)})
        box.start("hold", "other")
        await box.settle()
        for n in range(6):
            box.start(f"big{n}", "big")
            box.start(f"small{n}", "small")
        box.start("guaranteed0", "guaranteed")
        await box.settle()
        admitted = []
        for _ in range(9):
            last = box.order[-1]
            await box.finish(last)
            admitted.append(box.order[-1])
        assert admitted[0] == "guaranteed0"  # below its minimum: first
        tenants = [name.rstrip("0123456789") for name in admitted[1:]]
        assert tenants.count("big") == 6 and tenants.count("small") == 2  # 3 : 1 while both wait
        for name in list(box.release):
            box.release[name].set()
        await asyncio.gather(*box.tasks)

    asyncio.run(scenario())


def test_within_a_tenant_users_take_turns() -> None:
    async def scenario() -> None:
        box = Box(capacity=1)
        box.start("hold", "other")
        await box.settle()
        for n in range(3):
            box.start(f"alice{n}", "acme", user="alice")
        box.start("bob0", "acme", user="bob")
        await box.settle()
        await box.finish("hold")
        await box.finish(box.order[-1])
        assert box.order[1:3] == ["alice0", "bob0"]  # bob's one call does not wait behind all of alice's
        for name in list(box.release):
            box.release[name].set()
        await asyncio.gather(*box.tasks)

    asyncio.run(scenario())


def test_a_tenant_over_its_share_runs_with_a_later_engine_priority() -> None:
    async def scenario() -> None:
        admission = Admission()
        noisy = [call_of("noisy") for _ in range(3)]
        quiet = call_of("quiet")
        async with contextlib.AsyncExitStack() as stack:
            for call in [noisy[0], noisy[1], quiet, noisy[2]]:  # 5 slots; from the quiet call on, 2 tenants share them
                await stack.enter_async_context(admission.admitted(call, ENTRY, 5, Share(), 30, 100))  # type: ignore
        assert [call.fields.get("priority", 0) for call in [*noisy, quiet]] == [0, 0, OVER_SHARE_PRIORITY, 0]

    asyncio.run(scenario())


def test_a_call_that_waits_too_long_is_told_to_retry_and_leaves_the_queue() -> None:
    async def scenario() -> None:
        box = Box(capacity=1, timeout_s=0.05)
        box.start("hold", "acme")
        await box.settle()
        late = box.start("late", "other")
        with pytest.raises(ApiError) as refused:
            await late
        assert refused.value.code == ErrorCode.BACKEND_RATE_LIMITED and refused.value.retry_after
        assert not box.admission.queues["acme/chat"].waiting
        await box.finish("hold")
        assert box.order == ["hold"]  # the slot it gave back went to nobody who had left

    asyncio.run(scenario())


def test_a_client_that_leaves_while_queued_frees_its_place_at_once() -> None:
    async def scenario() -> None:
        box = Box(capacity=1)
        box.start("hold", "acme")
        await box.settle()
        gone = box.start("gone", "other")
        box.start("next", "third")
        await box.settle()
        gone.cancel()  # the client disconnected
        await box.settle()
        queue = box.admission.queues["acme/chat"]
        assert "other" not in queue.waiting
        await box.finish("hold")
        assert box.order == ["hold", "next"]
        await box.finish("next")

    asyncio.run(scenario())


def test_a_call_whose_client_disconnects_while_queued_leaves_without_running() -> None:
    async def scenario() -> None:
        box = Box(capacity=1)
        box.start("hold", "acme")
        await box.settle()
        disconnected = asyncio.Event()
        left = box.start("left", "other", gone=disconnected.wait)  # the gateway's watch on the client's connection
        box.start("next", "third")
        await box.settle()
        disconnected.set()
        with pytest.raises(ClientGone):
            await left
        assert "other" not in box.admission.queues["acme/chat"].waiting
        await box.finish("hold")
        assert box.order == ["hold", "next"]  # it never ran
        await box.finish("next")

    asyncio.run(scenario())


def test_a_full_queue_refuses_at_once_and_the_gateways_own_calls_pass() -> None:
    async def scenario() -> None:
        box = Box(capacity=1, waiting_at_most=1)
        box.start("hold", "acme")
        box.start("waits", "acme")
        await box.settle()
        refused = box.start("refused", "acme")
        await box.settle()
        assert isinstance(refused.exception(), ApiError)
        assert refused.exception().code == ErrorCode.BACKEND_RATE_LIMITED  # type: ignore[union-attr]
        line = call_of("acme", background=True)  # a batch line: it yields to live traffic by other means
        async with box.admission.admitted(line, ENTRY, 1, Share(), 30, 1):  # type: ignore[arg-type]
            pass
        for name in ("hold", "waits"):
            await box.finish(name)

    asyncio.run(scenario())
