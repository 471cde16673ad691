"""A broken connection to a live worker costs that one request; only a worker that is gone loses them all."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from appliance.catalogue import ModelEntry
from appliance.supervisor.local_backend import LocalBackend

ENTRY = ModelEntry(slug="acme/embed", modality="embedding", engine="sentence-transformers", path=Path("/m"))


async def slow_engine(socket_path: Path) -> web.AppRunner:
    """A real HTTP server on the worker's socket whose every answer takes half a second."""

    async def answer(_request: web.Request) -> web.Response:
        await asyncio.sleep(0.5)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/v1/embeddings", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.UnixSite(runner, str(socket_path)).start()
    return runner


async def in_flight_after_failure(tmp_path: Path, process_alive: bool) -> asyncio.Task[object]:
    worker = LocalBackend(ENTRY, tmp_path, start_timeout_s=10, backend_timeout_s=10)
    runner = await slow_engine(worker.socket_path)
    # A real process stands in for the engine's guard: alive, or already exited.
    worker.process = await asyncio.create_subprocess_exec(sys.executable, "-c", "import time; time.sleep(30)")
    if not process_alive:
        worker.process.kill()
        await worker.process.wait()
    try:
        other = asyncio.ensure_future(worker.endpoint.post_bytes("/embeddings", b"{}"))
        await asyncio.sleep(0.2)  # the other request is on its way
        await worker.failed("ClientOSError while answering")  # what a broken connection of another one reports
        await asyncio.wait([other], timeout=5)
        return other
    finally:
        if worker.process.returncode is None:
            worker.process.kill()
            await worker.process.wait()
        await worker.endpoint.aclose()
        await runner.cleanup()


def test_a_broken_connection_to_a_live_worker_leaves_the_other_requests_in_flight_running(tmp_path: Path) -> None:
    other = asyncio.run(in_flight_after_failure(tmp_path, process_alive=True))
    status, _headers, body = other.result()
    assert (status, body) == (200, b'{"ok": true}')


def test_a_worker_whose_process_is_gone_drops_its_connections(tmp_path: Path) -> None:
    other = asyncio.run(in_flight_after_failure(tmp_path, process_alive=False))
    with pytest.raises(aiohttp.ClientError):
        other.result()
