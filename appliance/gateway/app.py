"""The gateway: a FastAPI app with the contract's routes, in front of the supervisor's workers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator

from fastapi import FastAPI
from starlette.types import ASGIApp

from appliance.accounting.service import Accounting
from appliance.batch.runner import BatchRunner
from appliance.batch.service import stores as batch_stores
from appliance.catalogue import Catalogue, CatalogueError, load_catalogue
from appliance.config import Settings
from appliance.db.database import open_database
from appliance.db.keys import KeyStore
from appliance.gateway.console import routes as console
from appliance.gateway.errors import install_error_handlers
from appliance.gateway.middleware import RequestContext
from appliance.gateway.openapi import install_openapi
from appliance.gateway.ratelimit import RateLimiter
from appliance.gateway.routes import accounting, admin, audio, audit, batches, chat, embed, health, images, keys, \
    media, models, oai_batches, rerank, responses, tenants, tls, users
from appliance.gateway.systemd import notify
from appliance.media.sweeper import run_sweeper
from appliance.serving.response_jobs import ResponseJobs
from appliance.serving.runtime import Runtime
from appliance.supervisor.engine_logs import set_directory as set_engine_log_directory
from appliance.supervisor.supervisor import Supervisor

log = logging.getLogger("appliance.gateway")

PID_FILE = "appliance.pid"  # in the state dir, while serving: where `appliance models reload` sends SIGHUP


def create_app(settings: Settings, catalogue: Catalogue) -> FastAPI:
    """The FastAPI app; its lifespan starts the supervisor and the background tasks, and stops every worker."""
    set_engine_log_directory(settings.state_dir / "logs")
    supervisor = Supervisor(catalogue, settings)

    database = open_database(settings.effective_database_url)
    usage = Accounting(database, reservation_hold_s=settings.budget_reservation_hold_s)
    runtime = Runtime(settings, catalogue, supervisor, KeyStore(database), usage)
    runtime.rate_limiter = RateLimiter()
    runtime.responses = ResponseJobs(runtime, database)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        usage.start()
        await supervisor.start()
        loop = asyncio.get_running_loop()
        waiter = loop.create_task(_announce_ready(supervisor))
        # The batch runner and the media sweeper (which first clears what expired while the gateway was down).
        runtime.batch_runner = BatchRunner(runtime, *batch_stores(runtime))
        background = [loop.create_task(runtime.batch_runner.run(), name="batch runner"),
                      loop.create_task(run_sweeper(runtime.media), name="media sweeper"),
                      loop.create_task(runtime.disk_reserve.keep(), name="disk reserve"),
                      loop.create_task(runtime.responses.run(), name="responses runner")]
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # main thread, Unix only
            loop.add_signal_handler(signal.SIGHUP, lambda: app.state.tasks.add(loop.create_task(_on_sighup(app))))
        pid_file = settings.state_dir / PID_FILE
        pid_file.write_text(f"{os.getpid()}\n")
        try:
            yield
        finally:
            pid_file.unlink(missing_ok=True)
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signal.SIGHUP)
            for task in background:  # the batch runner stops before the workers do
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            waiter.cancel()
            notify("STOPPING=1")
            await supervisor.stop()
            log.info("all workers stopped")
            await usage.stop()  # after the last request: every usage row is written

    app = FastAPI(title="Inference appliance", version="0.1.0", lifespan=lifespan)
    app.state = runtime  # type: ignore[assignment]  # what the routes reach as request.app.state
    install_error_handlers(app)
    install_openapi(app)
    for module in (health, models, embed, rerank, images, media, audio, chat, responses, keys, users, tenants,
                   accounting, audit, batches, oai_batches, admin, tls, console):
        app.include_router(module.router)
    return app


def create_gateway(settings: Settings, catalogue: Catalogue) -> ASGIApp:
    """The app wrapped in its outermost layer: what uvicorn serves."""
    return RequestContext(create_app(settings, catalogue), max_body_bytes=settings.max_body_bytes)


async def reload_catalogue(app: FastAPI) -> dict[str, list[str]]:
    """Re-read the catalogue file and serve it (SIGHUP, with the TLS certificate; ``appliance models reload``,
    ``systemctl reload``)."""
    runtime: Runtime = app.state  # type: ignore[assignment]
    current = runtime.catalogue
    if current.source is None:
        raise CatalogueError("this appliance was started without a catalogue file; nothing to reload")
    catalogue = load_catalogue(current.source)
    runtime.catalogue = catalogue  # with the supervisor's pools swapped before its first await: no gap
    return await runtime.supervisor.reload(catalogue)


async def _on_sighup(app: FastAPI) -> None:
    if app.state.tls is not None:
        app.state.tls.reload()  # new connections get the new certificate; a bad one is logged and the old one stays
    try:
        await reload_catalogue(app)
    except CatalogueError as exc:
        log.error("catalogue not reloaded, the models served stay as they were: %s", exc)
    finally:
        app.state.tasks.discard(asyncio.current_task())


async def _announce_ready(supervisor: Supervisor) -> None:
    await supervisor.wait_startup_models()
    log.info("startup models ready")
    notify("READY=1")
