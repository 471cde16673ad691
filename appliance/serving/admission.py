"""Who goes first when a model is full: weighted fair shares across tenants, then across a tenant's users and keys.

While a model has room (fewer live calls in flight than its capacity, and none
waiting), a call passes straight through: an uncontended box adds nothing.
Once it is full, live calls wait in a queue per tenant and are admitted, one
for each call that ends, in weighted fair order across the tenants waiting:
the tenant running the fewest calls per unit of its ``share_weight`` goes
next (ties in turn), a tenant below its ``min_concurrency`` on the model goes
first, and within a tenant its users (or keys) take turns. One tenant's flood
therefore fills its own queue, not everyone's: another tenant's call waits for
the next free slot, not for the flood. And a few slots (``headroom``) are kept
from the tenant holding the most: a tenant that arrives while another floods
the model starts at once, without waiting for one of the flood's calls to end
(an engine such as vLLM does not preempt a running sequence for a newcomer).

The engine gets the same order: a call of a tenant running more than its fair
share of the model carries a larger vLLM ``priority`` (later), so vLLM's own
queue agrees. The gateway's own calls (batch lines, background responses) are
not admitted here: they carry ``BACKGROUND_PRIORITY``, below every live call,
and batch lines also yield to live traffic (batch/fairness.py). A waiting call
leaves the queue at once when its client goes away (``Call.gone``; nothing is
charged), and gives up after the model's timeout with BACKEND_RATE_LIMITED and
a ``retry_after``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from appliance.catalogue import ModelEntry
from appliance.engines.capacity import concurrency, max_waiting
from appliance.metrics import ADMISSION_ADMITTED, ADMISSION_WAIT, ADMISSION_WAITING
from appliance.serving.context import Call
from appliance.serving.errors import ApiError, ClientGone, ErrorCode

OVER_SHARE_PRIORITY = 5  # vLLM's priority of a live call beyond its tenant's fair share (0 within it)
# vLLM's priority of the gateway's own calls, batch lines and background responses (lower runs first): its scheduler
# admits every waiting live request before them, and under memory pressure preempts them first.
BACKGROUND_PRIORITY = 10
RETRY_WHEN_FULL_S = 5
HEADROOM_SHARE = 32  # one slot in this many (at least one, from 4 slots up) is kept from the tenant holding the most


def headroom_of(capacity: int) -> int:
    return max(1, capacity // HEADROOM_SHARE) if capacity >= 4 else 0


@dataclass(frozen=True)
class Share:
    """A tenant's claim on a full model: its weight among the tenants waiting, and slots it always gets."""

    weight: float = 1.0
    min_concurrency: int = 0


@dataclass(eq=False)
class _Waiter:
    tenant: str
    member: str  # the user (or, for a key of no user, the key) it is queued under
    future: asyncio.Future[None]
    since: float = field(default_factory=time.monotonic)


class _TenantQueue:
    """A tenant's waiting calls, taken in turn from each of its users (or keys)."""

    def __init__(self) -> None:
        self.members: dict[str, deque[_Waiter]] = {}
        self.turn: deque[str] = deque()

    def __len__(self) -> int:
        return sum(len(waiters) for waiters in self.members.values())

    def push(self, waiter: _Waiter) -> None:
        if waiter.member not in self.members:
            self.members[waiter.member] = deque()
            self.turn.append(waiter.member)
        self.members[waiter.member].append(waiter)

    def pop(self) -> _Waiter:
        member = self.turn.popleft()
        waiters = self.members[member]
        waiter = waiters.popleft()
        if waiters:
            self.turn.append(member)
        else:
            del self.members[member]
        return waiter

    def remove(self, waiter: _Waiter) -> None:
        waiters = self.members.get(waiter.member)
        if waiters is None or waiter not in waiters:
            return
        waiters.remove(waiter)
        if not waiters:
            del self.members[waiter.member]
            self.turn.remove(waiter.member)


class ModelQueue:
    """One model's slots, its live calls in flight per tenant, and the tenants waiting, in fair order."""

    def __init__(self, slug: str, capacity: int, headroom: int = 0) -> None:
        self.slug = slug
        self.capacity = capacity
        self.headroom = headroom  # slots the tenant holding the most does not get
        self.running: Counter[str] = Counter()  # live calls in flight, by tenant
        self.waiting: dict[str, _TenantQueue] = {}
        self.rounds: deque[str] = deque()  # the tenants waiting, in turn order (for ties)
        self.shares: dict[str, Share] = {}  # of the tenants running or waiting (as last seen)

    @property
    def in_flight(self) -> int:
        return sum(self.running.values())

    @property
    def queued(self) -> int:
        return sum(len(queue) for queue in self.waiting.values())

    def _top(self, tenant: str) -> bool:
        """Whether ``tenant`` holds the most slots (then the headroom is not for it)."""
        return self.running[tenant] >= max(self.running.values(), default=0)

    def has_room(self, tenant: str) -> bool:
        if self.waiting or self.in_flight >= self.capacity:
            return False
        return self.in_flight < self.capacity - self.headroom or not self._top(tenant)

    def start(self, tenant: str) -> None:
        self.running[tenant] += 1

    def finish(self, tenant: str) -> None:
        self.running[tenant] -= 1
        if self.running[tenant] <= 0:
            del self.running[tenant]
        self.dispatch()

    def enqueue(self, waiter: _Waiter) -> None:
        queue = self.waiting.get(waiter.tenant)
        if queue is None:
            queue = self.waiting[waiter.tenant] = _TenantQueue()
            self.rounds.append(waiter.tenant)
        queue.push(waiter)
        ADMISSION_WAITING.labels(self.slug, waiter.tenant).inc()

    def remove(self, waiter: _Waiter) -> None:
        """A waiter that gave up (its client left, its time ran out) leaves the queue."""
        queue = self.waiting.get(waiter.tenant)
        if queue is None:
            return
        before = len(queue)
        queue.remove(waiter)
        if len(queue) < before:
            ADMISSION_WAITING.labels(self.slug, waiter.tenant).dec()
        if not queue:
            self._drop(waiter.tenant)

    def _drop(self, tenant: str) -> None:
        del self.waiting[tenant]
        self.rounds.remove(tenant)

    def dispatch(self) -> None:
        """Admit waiting calls while there are free slots: tenants below their minimum first, then by weight (in
        the headroom, only tenants that do not hold the most)."""
        while self.waiting and self.in_flight < self.capacity:
            headroom = self.in_flight >= self.capacity - self.headroom
            tenant = self._below_minimum() or self._next_by_weight(headroom)
            if tenant is None:
                return
            self._admit(tenant)

    def _below_minimum(self) -> str | None:
        starved = [tenant for tenant in self.rounds
                   if self.running[tenant] < self.shares.get(tenant, Share()).min_concurrency]
        return min(starved, key=lambda t: self.running[t] / max(1, self.shares[t].min_concurrency), default=None)

    def _next_by_weight(self, headroom: bool = False) -> str | None:
        """The waiting tenant furthest below its weighted share of the slots (fewest calls running per unit of
        weight, counting the one it would start); ties go round robin (the tenant served goes to the back)."""
        candidates = [t for t in self.rounds if not (headroom and self._top(t))]
        if not candidates:
            return None
        tenant = min(candidates, key=lambda t: (self.running[t] + 1) / self.shares.get(t, Share()).weight)
        self.rounds.remove(tenant)
        self.rounds.append(tenant)
        return tenant

    def _admit(self, tenant: str) -> None:
        queue = self.waiting[tenant]
        waiter = queue.pop()
        ADMISSION_WAITING.labels(self.slug, tenant).dec()
        if not queue:
            self._drop(tenant)
        self.start(tenant)
        waiter.future.set_result(None)

    def fair_share(self, tenant: str) -> float:
        """The slots ``tenant`` is owed now: the capacity split by weight among the tenants running or waiting."""
        active = set(self.running) | set(self.waiting) | {tenant}
        total = sum(self.shares.get(t, Share()).weight for t in active)
        return self.capacity * self.shares.get(tenant, Share()).weight / total if total else self.capacity


class Admission:
    """The admission queues of every model, for one gateway."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.queues: dict[str, ModelQueue] = {}

    def queue(self, entry: ModelEntry, capacity: int) -> ModelQueue:
        queue = self.queues.get(entry.slug)
        if queue is None:
            queue = self.queues[entry.slug] = ModelQueue(entry.slug, capacity, headroom_of(capacity))
        elif queue.capacity != capacity:  # a reloaded catalogue changed it
            queue.capacity, queue.headroom = capacity, headroom_of(capacity)
            queue.dispatch()
        return queue

    @contextlib.asynccontextmanager
    async def admitted(self, call: Call, entry: ModelEntry, capacity: int, share: Share, timeout_s: float,
                       waiting_at_most: int) -> AsyncIterator[None]:
        """Hold one of the model's slots for the call (live calls only), waiting in fair order while it is full."""
        if not self.enabled or call.background:
            yield
            return
        queue = self.queue(entry, capacity)
        tenant = call.tenant_id
        queue.shares[tenant] = share
        if queue.has_room(tenant):
            queue.start(tenant)
            ADMISSION_ADMITTED.labels(entry.slug, tenant, "direct").inc()
        elif queue.queued >= waiting_at_most:
            raise ApiError(ErrorCode.BACKEND_RATE_LIMITED, f"Model '{entry.slug}' is busy: {queue.in_flight} "
                           f"request(s) run and {queue.queued} wait, as many as it takes; retry later.",
                           retry_after=RETRY_WHEN_FULL_S)
        else:
            await self._wait(queue, call, tenant, timeout_s)
        if queue.running[tenant] > queue.fair_share(tenant):
            call.fields["priority"] = OVER_SHARE_PRIORITY
        try:
            yield
        finally:
            queue.finish(tenant)

    async def _wait(self, queue: ModelQueue, call: Call, tenant: str, timeout_s: float) -> None:
        member = call.caller.user_id or call.key.id
        waiter = _Waiter(tenant, member, asyncio.get_running_loop().create_future())
        queue.enqueue(waiter)
        queue.dispatch()  # a free slot in the headroom goes at once to a tenant that does not hold the most
        gone = asyncio.ensure_future(_left(call.gone)) if call.gone is not None and not waiter.future.done() else None
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.wait([waiter.future] if gone is None else [waiter.future, gone],
                                   return_when=asyncio.FIRST_COMPLETED)
            if not waiter.future.done():
                raise ClientGone
        except BaseException as exc:
            if waiter.future.done() and not waiter.future.cancelled():  # admitted as it gave up: free the slot
                queue.finish(tenant)
            else:
                waiter.future.cancel()
                queue.remove(waiter)
            if isinstance(exc, TimeoutError):
                raise ApiError(ErrorCode.BACKEND_RATE_LIMITED, f"Model '{queue.slug}' is busy: this request waited "
                               f"{timeout_s:.0f} s behind {queue.queued} other(s) for a free slot; retry later.",
                               retry_after=max(1, math.ceil(timeout_s / 4))) from None
            raise
        finally:
            if gone is not None:
                gone.cancel()
        waited = time.monotonic() - waiter.since
        call.fields["queue_wait_ms"] = round(waited * 1000, 2)
        ADMISSION_WAIT.labels(queue.slug, tenant).observe(waited)
        ADMISSION_ADMITTED.labels(queue.slug, tenant, "queued").inc()


async def _left(gone: Callable[[], Awaitable[None]]) -> None:
    """Returns once the client has gone; never, when that cannot be told (its watch failed)."""
    with contextlib.suppress(Exception):
        await gone()
        return
    await asyncio.get_running_loop().create_future()


def admitted(call: Call, entry: ModelEntry) -> contextlib.AbstractAsyncContextManager[None]:
    """The call's slot of ``entry`` (serving/relay.py holds it around every call to a backend)."""
    capacity = concurrency(entry)
    tenant = call.caller.tenant
    share = Share(tenant.share_weight, min(tenant.min_concurrency, capacity))
    timeout_s = entry.timeout_s or call.runtime.settings.backend_timeout_s
    return call.runtime.admission.admitted(call, entry, capacity, share, timeout_s, max_waiting(entry))
