"""One model's local backend: its worker process (spawn, wait until healthy, watch, restart with
back-off, stop) and the endpoint that reaches it."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from appliance.backends.transport import Endpoint, TransportError
from appliance.catalogue import ModelEntry
from appliance.engines.registry import engine_spec
from appliance.metrics import WORKER_RESTARTS, WORKER_STATE
from appliance.supervisor.engine_logs import engine_log
from appliance.supervisor.launch import worker_command, worker_environment
from appliance.supervisor.lifeline import lifeline_fd
from appliance.supervisor.priority import lower_priority
from appliance.state_dir import prepare_socket_dir
from appliance.supervisor.stale_engines import OWNER_ENV

log = logging.getLogger("appliance.supervisor")

HEALTH_INTERVAL_S = 5.0
HEALTH_FAILURES_TO_RESTART = 3
BACKOFF_MAX_S = 30.0
STOP_GRACE_S = 15.0


class WorkerState(StrEnum):
    STOPPED = "stopped"  # not running; starts on first use (on-demand) or at start-up
    STARTING = "starting"  # process up, model loading
    READY = "ready"
    BACKOFF = "backoff"  # died; waiting before the next start
    STOPPING = "stopping"


def engine_group(guard_pid: int) -> int | None:
    """The process group the guard started the engine in (the engine leads its own session)."""
    try:
        children = Path(f"/proc/{guard_pid}/task/{guard_pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def socket_name(slug: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", slug)


def socket_file(slug: str) -> str:
    """A short, unique file name for the slug's socket (slugs may be long; socket paths may not)."""
    return f"{socket_name(slug)[:36]}-{hashlib.sha256(slug.encode()).hexdigest()[:8]}.sock"


@dataclass
class _Progress:
    """An engine's work counters (``progress_counters`` on its /metrics) and when they last grew."""

    counters: tuple[str, ...]
    stall_s: float
    total: float | None = None
    since: float = field(default_factory=time.monotonic)

    def idle(self) -> None:
        self.total, self.since = None, time.monotonic()

    def stalled(self, metrics: bytes) -> bool:
        total = sum(_counter(metrics, name) for name in self.counters)
        if total != self.total:
            self.total, self.since = total, time.monotonic()
            return False
        return time.monotonic() - self.since > self.stall_s


def _counter(metrics: bytes, name: str) -> float:
    """The sum of every series of counter ``name`` in a Prometheus text exposition."""
    total = 0.0
    prefix = name.encode()
    for line in metrics.splitlines():
        if line.startswith(prefix) and line[len(prefix):len(prefix) + 1] in (b"{", b" "):
            with contextlib.suppress(ValueError, IndexError):
                total += float(line.rsplit(maxsplit=1)[1])
    return total


class LocalBackend:
    """One local replica of a model: the process serving it on a Unix socket, and the endpoint that reaches it.

    The supervisor owns the process; the gateway sends requests through
    ``endpoint`` (the transport), like to any other backend.
    """

    def __init__(self, entry: ModelEntry, socket_dir: Path, start_timeout_s: float, backend_timeout_s: float,
                 replica: int = 0, media_dir: Path | None = None, owner: str | None = None) -> None:
        self.entry = entry
        self.media_dir = media_dir
        self.owner = owner  # OWNER_ENV of its processes: a later start finds them if they outlive this gateway
        # Replica 1 keeps the socket name a model had before replicas existed.
        name = entry.slug if replica == 0 else f"{entry.slug}#{replica + 1}"
        self.socket_path = socket_dir / socket_file(name)
        self.backend_id = f"{entry.engine}:{socket_name(entry.slug)}"
        if entry.replicas > 1:
            self.backend_id += f"#{replica + 1}"
        self.endpoint = Endpoint.unix(self.socket_path, timeout_s=entry.timeout_s or backend_timeout_s)
        self.start_timeout_s = start_timeout_s
        self.state = WorkerState.STOPPED
        self.ready = asyncio.Event()
        self.process: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self.last_error: str | None = None
        # Set while the process is restarted for not answering (its health checks, or no progress on its requests):
        # the requests it held then end as BACKEND_TIMEOUT, not as a crash.
        self.unresponsive = False
        self.in_flight = 0
        self.last_used = time.monotonic()
        self.retry_at = 0.0
        # Refined by each start; feeds retry_after.
        self.expected_start_s = engine_spec(entry.engine, entry.modality).start_hint_s
        self._started_at = time.monotonic()
        self._task: asyncio.Task[None] | None = None
        self._engine_group: int | None = None  # the engine's process group (its guard's child leads it)
        self._stopping = False
        WORKER_STATE.labels(entry.slug, self.state.value).inc()

    # --- public -----------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the worker (and keep it running) unless it already is."""
        if self.running:
            return
        self._stopping = False
        self._task = asyncio.get_running_loop().create_task(self._supervise(), name=f"worker {self.entry.slug}")

    async def stop(self) -> None:
        """Stop the process and its supervision; the model's memory is freed with it."""
        self._stopping = True
        if self.process is not None and self.process.returncode is None:
            self._set_state(WorkerState.STOPPING)
            await self._terminate(self.process)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self._task = None
        self._sweep_engine_group()
        self.ready.clear()
        self._set_state(WorkerState.STOPPED)
        self.socket_path.unlink(missing_ok=True)

    def is_up(self) -> bool:
        return self.state == WorkerState.READY

    async def failed(self, reason: str) -> None:
        """A request could not reach the process, or its connection broke mid-answer.

        Only a process that is gone makes every pooled connection useless (the
        watch loop restarts it); while it lives, one broken connection must not
        cut the other requests in flight on it.
        """
        log.warning("%s: %s", self.backend_id, reason)
        if self.process is None or self.process.returncode is not None:
            await self.endpoint.drop_connections()

    async def aclose(self) -> None:
        await self.stop()
        await self.endpoint.aclose()

    @contextlib.asynccontextmanager
    async def use(self) -> AsyncIterator[LocalBackend]:
        """Count a request as in flight, so that idle unloading and draining see it."""
        self.in_flight += 1
        self.last_used = time.monotonic()
        try:
            yield self
        finally:
            self.in_flight -= 1
            self.last_used = time.monotonic()

    def retry_after_s(self) -> int:
        now = time.monotonic()
        if self.state == WorkerState.BACKOFF:
            wait = self.retry_at - now + self.expected_start_s
        else:
            wait = self.expected_start_s - (now - self._started_at)
        return max(1, int(wait + 0.999))

    # --- supervision ------------------------------------------------------

    async def _supervise(self) -> None:
        backoff = 1.0
        while not self._stopping:
            self._set_state(WorkerState.STARTING)
            healthy_since: float | None = None
            try:
                process = await self._spawn()
                if await self._wait_healthy(process):
                    self._engine_group = engine_group(process.pid)
                    self._lower_busy_pollers()
                    healthy_since = time.monotonic()
                    self.expected_start_s = healthy_since - self._started_at
                    self._set_state(WorkerState.READY)
                    self.unresponsive = False
                    self.last_used = healthy_since  # idle time counts from ready, not from the request that woke it
                    self.ready.set()
                    log.info("%s ready in %.1f s (pid %s)", self.entry.slug, self.expected_start_s, process.pid)
                    await self._watch(process)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a failed start must not kill the supervision loop
                self.last_error = f"could not start: {exc}"
                log.exception("%s: start failed", self.entry.slug)
            self.ready.clear()
            await self.endpoint.drop_connections()  # none of them leads anywhere now
            if self._stopping:
                break
            if self.process is not None and self.process.returncode is None:
                await self._terminate(self.process)
            self._sweep_engine_group()
            if healthy_since is not None and time.monotonic() - healthy_since > 60:
                backoff = 1.0  # it ran well for a while: this is a fresh failure
            self.restarts += 1
            WORKER_RESTARTS.labels(self.entry.slug).inc()
            self.retry_at = time.monotonic() + backoff
            self._set_state(WorkerState.BACKOFF)
            log.warning("%s: %s; restarting in %.0f s", self.entry.slug, self.last_error, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    def _lower_busy_pollers(self) -> None:
        spec = engine_spec(self.entry.engine, self.entry.modality)  # a reranker has its own options
        if not spec.busy_pollers or self._engine_group is None:
            return
        nice = getattr(spec.options.model_validate(self.entry.engine_options), "busy_poll_nice", 0)
        if nice > 0:
            changed = lower_priority(self._engine_group, spec.busy_pollers, nice)
            log.info("%s: %s run at nice %d (they busy-poll between steps)", self.entry.slug,
                     ", ".join(sorted(changed)) or "no busy-polling process", nice)

    def _sweep_engine_group(self) -> None:
        """End what is left of the engine's process group once its guard is gone.

        The guard ends the group itself; only a guard killed outright (SIGKILL)
        leaves an engine's helper processes (vLLM's engine core) behind. Done as
        soon as the guard's death is seen, before the group id could be reused.
        """
        group, self._engine_group = self._engine_group, None
        if group is not None and self.process is not None and self.process.returncode is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)

    async def _spawn(self) -> asyncio.subprocess.Process:
        # Only the appliance's user may reach a worker: its socket skips the gateway's auth.
        prepare_socket_dir(self.socket_path.parent)
        self.socket_path.unlink(missing_ok=True)
        command = worker_command(self.entry, self.socket_path)
        env = worker_environment(self.entry, self.media_dir)
        if self.owner is not None:
            env[OWNER_ENV] = self.owner
        self._started_at = time.monotonic()
        lifeline = lifeline_fd()
        # The guard leads a session of its own: killing the gateway's process group does not take it along.
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "appliance.supervisor.reaper", str(lifeline), "--", *command,
            env=env, stdin=asyncio.subprocess.DEVNULL, start_new_session=True, pass_fds=(lifeline,),
            stdout=engine_log(self.entry.slug), stderr=asyncio.subprocess.STDOUT,  # STATE/logs/<model>.log
        )
        log.info("%s: started worker (guard pid %s)", self.entry.slug, self.process.pid)
        return self.process

    async def _healthy(self) -> bool:
        try:
            status, _body = await self.endpoint.probe(self.endpoint.origin + "/health", 5.0)
        except TransportError:
            return False
        return status == 200

    async def _wait_healthy(self, process: asyncio.subprocess.Process) -> bool:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if process.returncode is not None:
                self.last_error = f"the worker exited with code {process.returncode} while loading"
                return False
            if self.socket_path.exists() and await self._healthy():
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 0.2)
        self.last_error = f"the worker did not become healthy within {self.start_timeout_s:.0f} s"
        return False

    async def _watch(self, process: asyncio.subprocess.Process) -> None:
        """Return when the process exits, stops answering health checks, or holds requests without progress."""
        failures = 0
        spec = engine_spec(self.entry.engine, self.entry.modality)  # a reranker has its own options
        progress = _Progress(spec.progress_counters,
                             getattr(spec.options.model_validate(self.entry.engine_options), "stall_timeout_s", 0.0))
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), HEALTH_INTERVAL_S)
            if process.returncode is not None:
                self.last_error = f"the worker exited with code {process.returncode}"
                return
            failures = 0 if await self._healthy() else failures + 1
            if failures >= HEALTH_FAILURES_TO_RESTART:
                return self._unresponsive(f"the worker failed {failures} health checks in a row")
            if progress.counters and await self._stalled(progress):
                return self._unresponsive(f"the engine made no progress for {progress.stall_s:.0f} s on the "
                                          f"{self.in_flight} request(s) it held")

    def _unresponsive(self, reason: str) -> None:
        """Give up on the process: its requests end as timed out, and it is replaced."""
        self.last_error, self.unresponsive = reason, True
        log.warning("%s: %s; replacing it", self.entry.slug, reason)

    async def _stalled(self, progress: _Progress) -> bool:
        """Whether the engine held requests and processed nothing for ``stall_s`` (its counters stood still)."""
        if self.in_flight == 0:
            progress.idle()
            return False
        try:
            status, body = await self.endpoint.probe(self.endpoint.origin + "/metrics", 5.0)
        except TransportError:
            return False  # the health checks judge an engine that does not answer at all
        return status == 200 and progress.stalled(body)

    async def _terminate(self, process: asyncio.subprocess.Process) -> None:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), STOP_GRACE_S)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()

    def _set_state(self, state: WorkerState) -> None:
        if state != self.state:
            WORKER_STATE.labels(self.entry.slug, self.state.value).dec()
            WORKER_STATE.labels(self.entry.slug, state.value).inc()
        self.state = state
