"""All workers of the catalogue: lazy start, bounded waits, a GPU-memory ledger, idle unloading."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from appliance.catalogue import Catalogue, ModelEntry
from appliance.config import Settings
from appliance.supervisor.launch import is_supported
from appliance.supervisor.worker import Worker, WorkerState

log = logging.getLogger("appliance.supervisor")

IDLE_CHECK_INTERVAL_S = 5.0


class ModelUnavailable(Exception):
    """The model is known but cannot serve now; ``retry_after`` says when to try again."""

    def __init__(self, message: str, retry_after: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class Supervisor:
    def __init__(self, catalogue: Catalogue, settings: Settings) -> None:
        self.catalogue = catalogue
        self.settings = settings
        self.workers: dict[str, Worker] = {
            entry.slug: Worker(entry, settings.socket_dir, settings.worker_start_timeout_s, settings.backend_timeout_s)
            for entry in catalogue if is_supported(entry)
        }
        self._idle_task: asyncio.Task[None] | None = None

    def worker_for(self, entry: ModelEntry) -> Worker | None:
        return self.workers.get(entry.slug)

    async def start(self) -> None:
        """Start the startup models (without waiting for them) and the idle-unload loop."""
        for worker in self.workers.values():
            if worker.entry.load == "startup":
                try:
                    await self._reserve_memory(worker)
                except ModelUnavailable as exc:
                    log.error("%s not started: %s", worker.entry.slug, exc.message)
                    continue
                worker.start()
        self._idle_task = asyncio.get_running_loop().create_task(self._unload_idle())

    async def wait_startup_models(self, timeout: float | None = None) -> bool:
        """True once every startup model is ready."""
        startup = [w for w in self.workers.values() if w.entry.load == "startup"]
        try:
            await asyncio.wait_for(asyncio.gather(*(w.ready.wait() for w in startup)), timeout)
        except TimeoutError:
            return False
        return True

    def startup_ready(self) -> bool:
        return all(w.state == WorkerState.READY for w in self.workers.values() if w.entry.load == "startup")

    async def acquire(self, entry: ModelEntry) -> Worker:
        """The ready worker of ``entry``, starting it if needed; waits at most ``request_wait_s``."""
        worker = self.workers.get(entry.slug)
        if worker is None:
            raise ModelUnavailable(f"Model '{entry.slug}' uses engine '{entry.engine}', which this appliance "
                                   "cannot run yet.", None)
        worker.last_used = time.monotonic()
        if worker.state == WorkerState.READY:
            return worker
        if not worker.running:
            await self._reserve_memory(worker)
            worker.start()
        worker.in_flight += 1  # a waiting request keeps a loading model from being evicted or unloaded
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(worker.ready.wait(), self.settings.request_wait_s)
        finally:
            worker.in_flight -= 1
            worker.last_used = time.monotonic()
        if worker.state == WorkerState.READY:
            return worker
        raise ModelUnavailable(self._unavailable_message(worker), worker.retry_after_s())

    async def stop(self) -> None:
        if self._idle_task is not None:
            self._idle_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._idle_task
        await asyncio.gather(*(worker.aclose() for worker in self.workers.values()))

    # --- internals --------------------------------------------------------

    @staticmethod
    def _unavailable_message(worker: Worker) -> str:
        slug = worker.entry.slug
        if worker.state == WorkerState.BACKOFF:
            return f"Model '{slug}' stopped unexpectedly ({worker.last_error}) and is restarting."
        return f"Model '{slug}' is loading; try again shortly."

    async def _reserve_memory(self, worker: Worker) -> None:
        """Make room for ``worker`` in the GPU-memory ledger, unloading idle on-demand models, or refuse."""
        total = self.settings.gpu_memory_gb
        need = worker.entry.gpu_memory_gb
        if total is None or need == 0:
            return
        if need > total:
            raise ModelUnavailable(f"Model '{worker.entry.slug}' needs {need:g} GB of GPU memory; "
                                   f"this appliance has {total:g} GB.", None)
        loaded = [w for w in self.workers.values() if w.running and w is not worker]
        used = sum(w.entry.gpu_memory_gb for w in loaded)
        evictable = sorted((w for w in loaded if w.entry.load == "on-demand" and w.in_flight == 0),
                           key=lambda w: w.last_used)
        while used + need > total and evictable:
            victim = evictable.pop(0)
            log.info("unloading %s to make room for %s", victim.entry.slug, worker.entry.slug)
            await victim.stop()  # its memory must be free before the next model loads
            used -= victim.entry.gpu_memory_gb
        if used + need > total:
            raise ModelUnavailable(f"Model '{worker.entry.slug}' needs {need:g} GB of GPU memory and only "
                                   f"{total - used:g} GB is free while other models are busy.", 30)

    async def _unload_idle(self) -> None:
        while True:
            await asyncio.sleep(IDLE_CHECK_INTERVAL_S)
            now = time.monotonic()
            for worker in self.workers.values():
                idle_s = worker.entry.idle_unload_s
                if (idle_s and worker.entry.load == "on-demand" and worker.state == WorkerState.READY
                        and worker.in_flight == 0 and now - worker.last_used > idle_s):
                    log.info("unloading %s after %.0f s idle", worker.entry.slug, now - worker.last_used)
                    await worker.stop()
