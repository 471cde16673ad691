"""What the supervisor knows of every model, for operators (GET /v1/admin/status), and loading or unloading one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from importlib import metadata

from appliance.backends.pool import Backend
from appliance.engines.capacity import concurrency
from appliance.protocol.admin import (AdminStatus, BackendStatus, LedgerStatus, ModelState, ModelStatus, RecentStats,
                                      TenantLoad)
from appliance.serving.admission import Admission
from appliance.serving.audit import event_for, expect, noted
from appliance.serving.context import Call
from appliance.serving.errors import ApiError, ErrorCode
from appliance.serving.models import in_tenant, model_not_found
from appliance.serving.runtime import Runtime
from appliance.tenancy.caller import Caller
from appliance.supervisor.supervisor import ModelPool, ModelUnavailable
from appliance.supervisor.local_backend import LocalBackend, WorkerState

RECENT_WINDOW_S = 300  # "recent" latency and throughput: the last five minutes of usage rows

# The pool's state is its best worker's: one ready replica makes the model loaded.
STATE_OF_WORKER: dict[WorkerState, ModelState] = {
    WorkerState.READY: "loaded",
    WorkerState.STARTING: "starting",
    WorkerState.BACKOFF: "failed",
    WorkerState.STOPPING: "stopping",
    WorkerState.STOPPED: "unloaded",
}
STATE_ORDER: tuple[ModelState, ...] = ("loaded", "starting", "failed", "stopping", "unloaded")


def version() -> str:
    try:
        return metadata.version("appliance")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def pool_state(pool: ModelPool) -> ModelState:
    if not pool.local:
        return "remote"
    return min((worker_state(w) for w in pool.workers), key=STATE_ORDER.index, default="unloaded")


def worker_state(worker: LocalBackend) -> ModelState:
    if worker.state == WorkerState.STOPPED and worker.running:  # started; its loop has not spawned it yet
        return "starting"
    return STATE_OF_WORKER[worker.state]


def backend_status(backend: Backend) -> BackendStatus:
    if isinstance(backend, LocalBackend):
        return BackendStatus(id=backend.backend_id, state=backend.state.value, in_flight=backend.in_flight,
                             restarts=backend.restarts, last_error=backend.last_error)
    up = backend.is_up()
    return BackendStatus(id=backend.backend_id, state="up" if up else "down", in_flight=backend.in_flight,
                         restarts=0, last_error=None if up else getattr(backend, "last_error", None))


def recent_stats(row: dict[str, float] | None) -> RecentStats:
    if not row or not row["requests"]:
        return RecentStats(window_s=RECENT_WINDOW_S, requests=0, errors=0, mean_latency_ms=None,
                           output_tokens_per_s=None)
    seconds = row["latency_ms"] / 1000
    return RecentStats(window_s=RECENT_WINDOW_S, requests=int(row["requests"]), errors=int(row["errors"]),
                       mean_latency_ms=round(row["latency_ms"] / row["requests"], 1),
                       output_tokens_per_s=round(row["tokens_out"] / seconds, 1) if row["tokens_out"] and seconds
                       else None)


def model_status(pool: ModelPool, recent: dict[str, dict[str, float]], admission: Admission,
                 visible: Callable[[str], bool] = lambda _tenant: True) -> ModelStatus:
    entry = pool.entry
    backends = [backend_status(b) for b in pool.backends]
    errors = [b.last_error for b in backends if b.last_error]
    queue = admission.queues.get(entry.slug)
    loads = [] if queue is None else [
        TenantLoad(tenant_id=tenant, running=queue.running[tenant], waiting=len(queue.waiting.get(tenant, ())))
        for tenant in sorted(set(queue.running) | set(queue.waiting)) if visible(tenant)]
    return ModelStatus(
        slug=entry.slug, display_name=entry.display_name or entry.slug, modality=entry.api_modality,
        engine=entry.engine, load=entry.load, state=pool_state(pool), local=pool.local, backends=backends,
        restarts=sum(b.restarts for b in backends), last_error=errors[0] if errors else None,
        gpu_memory_gb=pool.gpu_memory_gb, recent=recent_stats(recent.get(entry.slug)),
        capacity=concurrency(entry), tenants=loads,
    )


async def status(runtime: Runtime, caller: Caller) -> AdminStatus:
    """Every model's status; a tenant's admin sees its tenant's models only."""
    supervisor, catalogue = runtime.supervisor, runtime.catalogue
    since = datetime.now(UTC) - timedelta(seconds=RECENT_WINDOW_S)
    recent = await asyncio.to_thread(runtime.accounting.usage.recent, since)
    entries = sorted((entry for entry in catalogue if in_tenant(caller, entry)), key=lambda e: e.slug)
    box = caller.reach("admin:access") == "box"
    models = [model_status(supervisor.pool_for(entry), recent, runtime.admission,
                           lambda tenant: box or tenant == caller.tenant_id) for entry in entries]
    return AdminStatus(version=version(), ready=supervisor.startup_ready(),
                       ledger=LedgerStatus(total_gb=supervisor.settings.gpu_memory_gb,
                                           used_gb=supervisor.memory_used_gb()),
                       models=models)


def _local_pool(runtime: Runtime, slug: str) -> ModelPool:
    entry = runtime.catalogue.get(slug)
    if entry is None:
        raise model_not_found(slug)
    pool: ModelPool = runtime.supervisor.pool_for(entry)
    if not pool.local:
        raise ApiError(ErrorCode.VALIDATION_ERROR, f"Model '{entry.slug}' is served by remote backends; "
                       "the appliance cannot load or unload it.")
    return pool


async def load(call: Call, slug: str) -> ModelStatus:
    """Start the model's workers; it loads in the background (its state is ``starting``, then ``loaded``)."""
    runtime = call.runtime
    event = event_for(call, "model.load", "model", slug)
    expect(call, event)
    pool = _local_pool(runtime, slug)
    try:
        await runtime.supervisor.load(pool.entry.slug, by=call.key.id)
    except ModelUnavailable as exc:
        raise ApiError(ErrorCode.MODEL_UNAVAILABLE, exc.message, retry_after=exc.retry_after) from None
    await noted(call, event)
    return model_status(pool, {}, runtime.admission)


async def unload(call: Call, slug: str) -> ModelStatus:
    """Stop the model's workers (requests in flight on them fail); the next request loads it again."""
    runtime = call.runtime
    event = event_for(call, "model.unload", "model", slug)
    expect(call, event)
    pool = _local_pool(runtime, slug)
    await runtime.supervisor.unload(pool.entry.slug, by=call.key.id)
    await noted(call, event)
    return model_status(pool, {}, runtime.admission)
