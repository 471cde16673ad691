"""The gateway: a FastAPI app with the contract's routes, in front of the supervisor's workers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from starlette.types import ASGIApp

from appliance.catalogue import Catalogue
from appliance.config import Settings
from appliance.db.database import open_database
from appliance.db.keys import KeyStore
from appliance.gateway.errors import install_error_handlers
from appliance.gateway.middleware import RequestContext
from appliance.gateway.openapi import install_openapi
from appliance.gateway.ratelimit import RateLimiter
from appliance.gateway.routes import audio, chat, embed, health, images, media, models
from appliance.gateway.systemd import notify
from appliance.supervisor.engine_logs import set_directory as set_engine_log_directory
from appliance.supervisor.supervisor import Supervisor

log = logging.getLogger("appliance.gateway")


def create_app(settings: Settings, catalogue: Catalogue) -> FastAPI:
    """The FastAPI app; its lifespan starts the supervisor and stops every worker."""
    set_engine_log_directory(settings.state_dir / "logs")
    supervisor = Supervisor(catalogue, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await supervisor.start()
        waiter = asyncio.get_running_loop().create_task(_announce_ready(supervisor))
        try:
            yield
        finally:
            waiter.cancel()
            notify("STOPPING=1")
            await supervisor.stop()
            log.info("all workers stopped")

    app = FastAPI(title="Inference appliance", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.catalogue = catalogue
    app.state.supervisor = supervisor
    app.state.keys = KeyStore(open_database(settings.effective_database_url))
    app.state.rate_limiter = RateLimiter()
    install_error_handlers(app)
    install_openapi(app)
    for module in (health, models, embed, images, media, audio, chat):
        app.include_router(module.router)
    return app


def create_gateway(settings: Settings, catalogue: Catalogue) -> ASGIApp:
    """The app wrapped in its outermost layer: what uvicorn serves."""
    return RequestContext(create_app(settings, catalogue), max_body_bytes=settings.max_body_bytes)


async def _announce_ready(supervisor: Supervisor) -> None:
    await supervisor.wait_startup_models()
    log.info("startup models ready")
    notify("READY=1")
