"""Every model's backends: local replicas started lazily under a GPU-memory ledger, remote servers probed.

A model is a ``BackendPool``: its local worker processes (``replicas``) or its
remote URLs. The supervisor starts, evicts and unloads local pools and keeps
the remote backends' health checks running; the gateway asks it for a backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time

from appliance.backends.pool import Backend, BackendPool
from appliance.backends.remote import RemoteBackend
from appliance.catalogue import Catalogue, ModelEntry
from appliance.config import Settings
from appliance.engines.registry import engine_spec
from appliance.supervisor.local_backend import LocalBackend, WorkerState
from appliance.supervisor.stale_engines import owner_mark, stop_stale_engines

log = logging.getLogger("appliance.supervisor")

IDLE_CHECK_INTERVAL_S = 5.0


class ModelUnavailable(Exception):
    """The model is known but cannot serve now; ``retry_after`` says when to try again."""

    def __init__(self, message: str, retry_after: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class ModelPool(BackendPool):
    """A model's pool, with what the supervisor needs to know of it."""

    def __init__(self, entry: ModelEntry, backends: list[LocalBackend] | list[RemoteBackend]) -> None:
        super().__init__(backends)
        self.entry = entry
        self.local = engine_spec(entry.engine).local
        self.last_used = time.monotonic()

    @property
    def workers(self) -> list[LocalBackend]:
        return [b for b in self.backends if isinstance(b, LocalBackend)]

    @property
    def running(self) -> bool:
        return any(worker.running for worker in self.workers)

    @property
    def gpu_memory_gb(self) -> float:
        return self.entry.gpu_memory_gb * len(self.workers)

    @property
    def idle_since(self) -> float:
        return max([self.last_used, *(w.last_used for w in self.workers)])

    def all_ready(self) -> bool:
        return all(w.state == WorkerState.READY for w in self.workers)

    def start(self) -> None:
        for backend in self.backends:
            backend.start()

    async def stop(self) -> None:
        await asyncio.gather(*(worker.stop() for worker in self.workers))

    async def aclose(self) -> None:
        await asyncio.gather(*(backend.aclose() for backend in self.backends))


class Supervisor:
    def __init__(self, catalogue: Catalogue, settings: Settings) -> None:
        self.catalogue = catalogue
        self.settings = settings
        self._owner = owner_mark(settings.state_dir)
        self.pools: dict[str, ModelPool] = {entry.slug: self._pool(entry) for entry in catalogue}
        self._draining: dict[ModelPool, asyncio.Task[None]] = {}  # pools of a previous catalogue, finishing
        self._idle_task: asyncio.Task[None] | None = None

    def _pool(self, entry: ModelEntry) -> ModelPool:
        timeout = entry.timeout_s or self.settings.backend_timeout_s
        if engine_spec(entry.engine).local:
            return ModelPool(entry, [LocalBackend(entry, self.settings.socket_dir, self.settings.worker_start_timeout_s,
                                                  timeout, replica, self.settings.media_dir, self._owner)
                                     for replica in range(entry.replicas)])
        bearer = os.environ.get(entry.api_key_env) if entry.api_key_env else None
        return ModelPool(entry, [RemoteBackend(entry, url, bearer, timeout, self.settings.remote_probe_interval_s)
                                 for url in entry.url])

    def pool_for(self, entry: ModelEntry) -> ModelPool:
        return self.pools[entry.slug]

    async def start(self) -> None:
        """Stop engines a previous gateway of this state dir left behind, then start the startup models (without
        waiting for them), the remote probes and the idle-unload loop."""
        if stale := await asyncio.to_thread(stop_stale_engines, self.settings.state_dir):
            log.warning("stopped %d engine process(es) that a previous gateway of %s left running (pids %s)",
                        len(stale), self.settings.state_dir, ", ".join(map(str, stale)))
        await self._start_pools(list(self.pools.values()))
        self._idle_task = asyncio.get_running_loop().create_task(self._unload_idle())

    async def _start_pools(self, pools: list[ModelPool]) -> None:
        for pool in pools:
            if not pool.local:
                pool.start()
            elif pool.entry.load == "startup":
                try:
                    await self._reserve_memory(pool)
                except ModelUnavailable as exc:
                    log.error("%s not started: %s", pool.entry.slug, exc.message)
                    continue
                pool.start()

    async def reload(self, catalogue: Catalogue) -> dict[str, list[str]]:
        """Serve ``catalogue`` from now on: new models appear, removed ones drain and stop, changed ones restart.

        Requests in flight on a removed or changed model finish on its old
        backends (for at most ``drain_timeout_s``); new requests see the new
        catalogue at once.
        """
        old = {entry.slug: entry for entry in self.catalogue}
        new = {entry.slug: entry for entry in catalogue}
        changes = {"added": [slug for slug in new if slug not in old],
                   "removed": [slug for slug in old if slug not in new],
                   "changed": [slug for slug in new if slug in old and new[slug] != old[slug]]}
        for slug in changes["removed"] + changes["changed"]:
            retired = self.pools.pop(slug)
            self._draining[retired] = asyncio.get_running_loop().create_task(self._drain(retired))
        fresh = [self._pool(new[slug]) for slug in changes["added"] + changes["changed"]]
        self.pools.update((pool.entry.slug, pool) for pool in fresh)
        self.catalogue = catalogue
        if changes["changed"]:  # their old workers must give their memory back before the new ones load
            await asyncio.gather(*(asyncio.shield(task) for task in self._draining.values()))
        await self._start_pools(fresh)
        log.info("catalogue reloaded: %s", "; ".join(f"{kind} {', '.join(slugs)}" for kind, slugs in changes.items()
                                                     if slugs) or "no change")
        return changes

    async def _drain(self, pool: ModelPool) -> None:
        deadline = time.monotonic() + self.settings.drain_timeout_s
        while pool.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        log.info("%s: stopping its old backends (%d request(s) still in flight)", pool.entry.slug, pool.in_flight)
        await pool.aclose()
        self._draining.pop(pool, None)

    def _startup_pools(self) -> list[ModelPool]:
        return [p for p in self.pools.values() if p.local and p.entry.load == "startup"]

    async def wait_startup_models(self, timeout: float | None = None) -> bool:
        """True once every replica of every startup model is ready."""
        waits = [w.ready.wait() for pool in self._startup_pools() for w in pool.workers]
        try:
            await asyncio.wait_for(asyncio.gather(*waits), timeout)
        except TimeoutError:
            return False
        return True

    def startup_ready(self) -> bool:
        return all(pool.all_ready() for pool in self._startup_pools())

    async def acquire(self, entry: ModelEntry, exclude: list[Backend] | None = None) -> Backend:
        """A backend of ``entry`` that takes requests now, starting local workers if needed.

        Waits at most ``request_wait_s`` for one to come up; with ``exclude``
        (backends that just failed this request) it does not wait at all.
        """
        pool = self.pools.get(entry.slug)
        if pool is None or pool.entry != entry:  # the catalogue was reloaded while this request waited
            raise ModelUnavailable(f"Model '{entry.slug}' was just changed or removed on this appliance; "
                                   "try again.", 1)
        pool.last_used = time.monotonic()
        backend = pool.pick(exclude or ())
        if backend is not None:
            return backend
        if pool.local and not all(worker.running for worker in pool.workers):
            await self._reserve_memory(pool)
            pool.start()
        if not exclude:
            await pool.wait_up(self.settings.request_wait_s)  # counts as in flight: not evicted meanwhile
            pool.last_used = time.monotonic()
            backend = pool.pick()
            if backend is not None:
                return backend
        raise ModelUnavailable(self._unavailable_message(pool), pool.retry_after_s())

    async def load(self, slug: str, by: str | None = None) -> ModelPool:
        """Start a local model's workers now (the console's Load button), within the GPU-memory ledger.

        ``by``: who asked (a key id), for the log line."""
        pool = self.pools[slug]
        if pool.local and not all(worker.running for worker in pool.workers):
            await self._reserve_memory(pool)
            log.info("%s: loading, as %s asked", slug, by or "an admin")
            pool.last_used = time.monotonic()  # not idle-unloaded the moment it is up
            pool.start()
        return pool

    async def unload(self, slug: str, by: str | None = None) -> ModelPool:
        """Stop a local model's workers, giving their memory back; the next request loads it again.

        ``by``: who asked (a key id), for the log line: requests in flight on the workers fail."""
        pool = self.pools[slug]
        if pool.local:
            log.info("%s: unloading, as %s asked (%d request(s) in flight)", slug, by or "an admin", pool.in_flight)
            await pool.stop()
            log.info("%s: unloaded", slug)
        return pool

    def memory_used_gb(self) -> float:
        """What the ledger counts as held now: every running local pool's ``gpu_memory_gb``."""
        return sum(pool.gpu_memory_gb for pool in [*self.pools.values(), *self._draining] if pool.running)

    async def stop(self) -> None:
        if self._idle_task is not None:
            self._idle_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._idle_task
        for task in self._draining.values():
            task.cancel()
        await asyncio.gather(*(pool.aclose() for pool in [*self.pools.values(), *self._draining]))

    # --- internals --------------------------------------------------------

    @staticmethod
    def _unavailable_message(pool: ModelPool) -> str:
        slug = pool.entry.slug
        if not pool.local:
            problems = "; ".join(f"{b.backend_id}: {b.last_error}" for b in pool.backends
                                 if isinstance(b, RemoteBackend) and not b.is_up())
            return f"Every backend of model '{slug}' is down ({problems}); the appliance keeps probing them."
        failed = [w for w in pool.workers if w.state == WorkerState.BACKOFF]
        if failed:
            return f"Model '{slug}' stopped unexpectedly ({failed[0].last_error}) and is restarting."
        return f"Model '{slug}' is loading; try again shortly."

    async def _reserve_memory(self, pool: ModelPool) -> None:
        """Make room for ``pool`` in the GPU-memory ledger, unloading idle on-demand models, or refuse."""
        total = self.settings.gpu_memory_gb
        need = pool.gpu_memory_gb
        if total is None or need == 0 or pool.running:
            return
        slug = pool.entry.slug
        if need > total:
            raise ModelUnavailable(f"Model '{slug}' needs {need:g} GB of GPU memory; "
                                   f"this appliance has {total:g} GB.", None)
        loaded = [p for p in [*self.pools.values(), *self._draining] if p.running and p is not pool]
        used = sum(p.gpu_memory_gb for p in loaded)
        evictable = sorted((p for p in loaded if p.entry.load == "on-demand" and p.in_flight == 0),
                           key=lambda p: p.idle_since)
        while used + need > total and evictable:
            victim = evictable.pop(0)
            log.info("unloading %s to make room for %s", victim.entry.slug, slug)
            await victim.stop()  # its memory must be free before the next model loads
            used -= victim.gpu_memory_gb
        if used + need > total:
            raise ModelUnavailable(f"Model '{slug}' needs {need:g} GB of GPU memory and only "
                                   f"{total - used:g} GB is free while other models are busy.", 30)

    async def _unload_idle(self) -> None:
        while True:
            await asyncio.sleep(IDLE_CHECK_INTERVAL_S)
            now = time.monotonic()
            for pool in self.pools.values():
                idle_s = pool.entry.idle_unload_s
                if (idle_s and pool.local and pool.entry.load == "on-demand" and pool.all_ready()
                        and pool.in_flight == 0 and now - pool.idle_since > idle_s):
                    log.info("unloading %s after %.0f s idle", pool.entry.slug, now - pool.idle_since)
                    await pool.stop()
