"""The gateway's media store: one per app, in the state directory and the state DB, and the URLs that reach it."""

from __future__ import annotations

from fastapi import FastAPI

from appliance.config import Settings
from appliance.gateway.context import Caller
from appliance.media.store import MediaStore

MEDIA_PATH = "/v1/media/"


def media_store(app: FastAPI) -> MediaStore:
    """The app's store, made on first use on the keys' database engine (the one state DB)."""
    store: MediaStore | None = getattr(app.state, "media", None)
    if store is None:
        settings: Settings = app.state.settings
        store = MediaStore(app.state.keys.engine, settings.media_dir, settings.media_ttl_s,
                           max_bytes=settings.max_media_bytes)
        app.state.media = store
    return store


def media_base_url(request: Caller) -> str:
    """``public_base_url`` when configured (a proxy in front, a DNS name), else the host the client called."""
    settings: Settings = request.app.state.settings
    base = settings.public_base_url or str(request.base_url)
    return base.rstrip("/") + MEDIA_PATH


def media_url(request: Caller, token: str) -> str:
    return media_base_url(request) + token
