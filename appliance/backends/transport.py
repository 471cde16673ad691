"""The one HTTP client of the gateway: every backend, local (Unix socket) or remote (HTTP/S), through aiohttp.

An ``Endpoint`` is the base URL of one backend's OpenAI API (``…/v1``) with its
own connection pool. It moves bytes and raises aiohttp's exceptions; what a
failure means for the client is the gateway's business (``gateway/relay.py``).
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import yarl

CONNECT_TIMEOUT_S = 5.0
# Idle connections close before any engine server's keep-alive timeout (uvicorn's default is 5 s): a
# server that closed first would race a request onto a dying connection.
KEEPALIVE_S = 2.0
MAX_CONNECTIONS = 256

# Transport failures, as raised by the calls below.
TransportError = (aiohttp.ClientError, TimeoutError)
# The request never reached the backend (refused, no route, no socket, connect timed out): safe to send
# to another one.
Unreachable = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
# Writing the request found its pooled connection closed by the server (a keep-alive that ended as it was
# reused): aiohttp reports "closing transport" without an errno, or the socket's EPIPE.
NOT_SENT_ERRNOS = (None, errno.EPIPE)
NOT_SENT_TRIES = 3


def never_sent(exc: BaseException) -> bool:
    """The request failed while being written to a connection the server had already closed: it never ran."""
    return (isinstance(exc, aiohttp.ClientOSError) and not isinstance(exc, aiohttp.ClientConnectorError)
            and exc.errno in NOT_SENT_ERRNOS)


class Endpoint:
    """One backend's OpenAI API: ``base_url`` (``http://host:port/v1``), over TCP or a Unix socket."""

    def __init__(self, base_url: str, *, socket_path: Path | None = None, bearer: str | None = None,
                 timeout_s: float) -> None:
        self.base_url = base_url.rstrip("/")
        parts = urlsplit(self.base_url)
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.socket_path = socket_path
        self.timeout_s = timeout_s
        self._headers = {"authorization": f"Bearer {bearer}"} if bearer else {}
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[tuple[str, bool], yarl.URL] = {}

    @classmethod
    def unix(cls, socket_path: Path, timeout_s: float) -> Endpoint:
        """A local worker: its OpenAI API under ``/v1`` on a Unix socket."""
        return cls("http://worker/v1", socket_path=socket_path, timeout_s=timeout_s)

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector: aiohttp.BaseConnector
            if self.socket_path is not None:
                connector = aiohttp.UnixConnector(path=str(self.socket_path), limit=MAX_CONNECTIONS,
                                                  keepalive_timeout=KEEPALIVE_S)
            else:
                connector = aiohttp.TCPConnector(limit=MAX_CONNECTIONS, keepalive_timeout=KEEPALIVE_S)
            self._session = aiohttp.ClientSession(  # no cookies: backends are APIs, and the jar costs per request
                connector=connector, headers=self._headers, skip_auto_headers=("User-Agent",),
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=self.timeout_s, sock_connect=CONNECT_TIMEOUT_S))
        return self._session

    def stream_timeout(self) -> aiohttp.ClientTimeout:
        """No limit on a whole stream (answers may be long); a limit on each wait for the next bytes."""
        return aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_S, sock_read=self.timeout_s)

    async def post(self, path: str, data: Any, headers: Mapping[str, str] | None = None, *,
                   stream: bool = False, at_root: bool = False) -> aiohttp.ClientResponse:
        """POST to ``base_url + path`` (``origin + path`` with ``at_root``: vLLM's /tokenize); the caller reads
        and releases the response (``async with``)."""
        url = self._url(path, at_root)
        options: dict[str, Any] = {"timeout": self.stream_timeout()} if stream else {}  # else the session's
        if isinstance(data, bytes | bytearray | str):  # not a stream that a first try would spend
            for _retry in range(NOT_SENT_TRIES - 1):
                try:
                    return await self.session.post(url, data=data, headers=headers, **options)
                except aiohttp.ClientOSError as exc:
                    # The server had closed the pooled connection (it never saw the request): sent again;
                    # each try discards one such connection.
                    if not never_sent(exc):
                        raise
        return await self.session.post(url, data=data, headers=headers, **options)

    def _url(self, path: str, at_root: bool) -> yarl.URL:
        """Parsed once per path rather than on every request."""
        key = (path, at_root)
        url = self._urls.get(key)
        if url is None:
            url = yarl.URL((self.origin if at_root else self.base_url) + path)
            if len(self._urls) < 64:  # the relay's paths are a handful of constants
                self._urls[key] = url
        return url

    async def post_bytes(self, path: str, data: Any, headers: Mapping[str, str] | None = None,
                         at_root: bool = False) -> tuple[int, Mapping[str, str], bytes]:
        """POST and read the whole answer: status, headers, body."""
        async with await self.post(path, data, headers, at_root=at_root) as response:
            return response.status, response.headers, await response.read()

    async def probe(self, url: str, timeout_s: float) -> tuple[int, bytes]:
        """GET ``url`` (absolute, or a path under ``base_url``) with a short timeout: status and body."""
        target = url if "://" in url else self.base_url + url
        async with self.session.get(target, timeout=aiohttp.ClientTimeout(total=timeout_s)) as response:
            return response.status, await response.read()

    async def drop_connections(self) -> None:
        """Close every pooled connection: none of them leads anywhere after the backend died."""
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def aclose(self) -> None:
        await self.drop_connections()
        await asyncio.sleep(0)  # let aiohttp finish closing its transports
