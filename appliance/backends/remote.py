"""A remote OpenAI-compatible server as a backend: health-probed, taken out of rotation when it fails.

It is probed with ``GET {url}/models`` at start and then every interval; it
is down after a failed request or ``failures_to_down`` failed probes in a
row, and up again at the first good probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

from appliance.backends.transport import TransportError, Endpoint
from appliance.catalogue import ModelEntry
from appliance.metrics import BACKEND_UP

log = logging.getLogger("appliance.backends")

PROBE_TIMEOUT_S = 5.0


def remote_backend_id(url: str) -> str:
    """``remote:host:port/path``: which server answered, without scheme or credentials."""
    parts = urlsplit(url)
    return f"remote:{parts.netloc}{parts.path}"


class RemoteBackend:
    def __init__(self, entry: ModelEntry, url: str, bearer: str | None, timeout_s: float,
                 probe_interval_s: float, failures_to_down: int = 2) -> None:
        self.entry = entry
        self.url = url
        self.backend_id = remote_backend_id(url)
        self.endpoint = Endpoint(url, bearer=bearer, timeout_s=timeout_s)
        self.in_flight = 0
        self.ready = asyncio.Event()
        self.last_error: str | None = "not probed yet"
        self.probe_interval_s = probe_interval_s
        self.failures_to_down = failures_to_down
        self._failures = 0
        self._task: asyncio.Task[None] | None = None
        BACKEND_UP.labels(entry.slug, self.backend_id).set(0)

    def is_up(self) -> bool:
        return self.ready.is_set()

    def retry_after_s(self) -> int:
        return max(1, int(self.probe_interval_s + 0.999))

    @contextlib.asynccontextmanager
    async def use(self) -> AsyncIterator[RemoteBackend]:
        self.in_flight += 1
        try:
            yield self
        finally:
            self.in_flight -= 1

    async def failed(self, reason: str) -> None:
        if self.is_up():
            log.warning("%s: backend %s is down: %s", self.entry.slug, self.backend_id, reason)
        self._mark(False, reason)
        await self.endpoint.drop_connections()

    # --- health -------------------------------------------------------------

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._watch(), name=f"probe {self.backend_id}")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.endpoint.aclose()

    async def _watch(self) -> None:
        while True:
            started = time.monotonic()
            problem = await self.check()
            if problem is None:
                if not self.is_up():
                    log.info("%s: backend %s is up", self.entry.slug, self.backend_id)
                self._failures = 0
                self._mark(True, None)
            else:
                self._failures += 1
                if self.is_up() and self._failures >= self.failures_to_down:
                    log.warning("%s: backend %s is down: %s", self.entry.slug, self.backend_id, problem)
                    self._mark(False, problem)
                elif not self.is_up():
                    self.last_error = problem
            await asyncio.sleep(max(0.0, self.probe_interval_s - (time.monotonic() - started)))

    async def check(self) -> str | None:
        """None when the server answers its model list and serves this model; else what is wrong."""
        try:
            status, body = await self.endpoint.probe("/models", PROBE_TIMEOUT_S)
        except TransportError as exc:
            return f"{type(exc).__name__} on GET /models"
        if status in (401, 403):
            return f"it refused the appliance's credentials (HTTP {status}); check api_key_env"
        if status != 200:
            return f"GET /models answered HTTP {status}"
        try:
            listing = json.loads(body)
            served = {item["id"] for item in listing["data"]}
        except (ValueError, KeyError, TypeError):
            return "GET /models did not answer an OpenAI model list"
        if served and self.entry.served_model not in served:
            return f"it does not serve '{self.entry.served_model}' (it serves {', '.join(sorted(served)[:5])})"
        return None

    def _mark(self, up: bool, problem: str | None) -> None:
        self.last_error = problem
        if up:
            self.ready.set()
        else:
            self.ready.clear()
        BACKEND_UP.labels(self.entry.slug, self.backend_id).set(1 if up else 0)
