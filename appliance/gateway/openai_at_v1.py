"""The OpenAI layer at ``/v1`` too: on a second port, or for requests to given host names.

The hosted service serves OpenAI's API on a dedicated host whose path is
``/v1``, so ``base_url="http://box:PORT/v1"`` is what clients and samples use.
Here ``/v1/…`` is served as ``/oai/v1/…`` (same routes, keys, errors and
metering): on ``openai_port``, and on the main port for the ``openai_hosts``
(a DNS name such as ``openai.box.lan`` pointing at the box). Media links
(``/v1/media/…``) and the paths outside ``/v1`` (health, metrics, console) are
the main surface's, so an image URL handed out on that port still resolves.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from appliance.gateway.http_limits import BoundedHttpProtocol
from appliance.gateway.routing import OPENAI_PREFIX
from appliance.serving.context import Surface
from appliance.serving.media import MEDIA_PATH

PREFIX = OPENAI_PREFIX.rstrip("/")  # "/oai"


def openai_path(path: str) -> str | None:
    """``/v1/chat/completions`` → ``/oai/v1/chat/completions``; None for a path the layer leaves alone."""
    if (path == "/v1" or path.startswith("/v1/")) and not path.startswith(MEDIA_PATH):
        return PREFIX + path
    return None


class OpenAIAtV1:
    """Serves ``/v1/…`` as ``/oai/v1/…``: for every request (``hosts`` None), or for those to one of ``hosts``."""

    def __init__(self, app: ASGIApp, hosts: Iterable[str] | None = None) -> None:
        self.app = app
        self.hosts = frozenset(host.lower() for host in hosts) if hosts is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (self.hosts is None or _host(scope) in self.hosts):
            path = openai_path(scope["path"])
            if path is not None:
                scope = {**scope, "path": path}
                if scope.get("raw_path") is not None:
                    scope["raw_path"] = PREFIX.encode() + scope["raw_path"]
        await self.app(scope, receive, send)


def _host(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"host":
            return value.decode("latin-1").rsplit(":", 1)[0].strip("[]").lower()
    return ""


class OpenAIHttpProtocol(BoundedHttpProtocol):
    """The HTTP parser's own refusals on the OpenAI port: OpenAI-shaped under ``/v1`` too."""

    def surface_for(self, path: str) -> Surface:
        return Surface.OPENAI if openai_path(path) is not None else super().surface_for(path)
