"""The URLs that reach stored media (``/v1/media/<token>``): on ``public_base_url``, else the host the caller used."""

from __future__ import annotations

from appliance.serving.context import Call

MEDIA_PATH = "/v1/media/"


def media_base_url(call: Call) -> str:
    """Where media links start: ``public_base_url`` when configured (a proxy in front, a DNS name), else the
    base URL the caller reached the appliance on."""
    base = call.runtime.settings.public_base_url or call.base_url
    return base.rstrip("/") + MEDIA_PATH
