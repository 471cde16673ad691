"""The HTTP server's own limits, enforced before a request reaches the app (and before any key is checked).

uvicorn's httptools parser has no limit on the request line or headers, no
time limit on a head or body that never completes (a fresh connection that
sends nothing waits forever), no cap on connections per client, and it answers
what it cannot parse with a plain-text 400. This protocol class caps the URL
and the whole head, closes a connection whose head is not complete within
``header_timeout_s`` or whose body goes silent for ``body_timeout_s`` (unless
the app itself is slow to read it), refuses a client's connections beyond
``max_connections_per_client``, and answers its refusals in the contract's
envelope (the OpenAI shape under ``/oai/``), on a closing connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from appliance.config import Settings

from appliance.gateway.errors import error_response
from appliance.gateway.middleware import new_request_id
from appliance.gateway.routing import surface_for_path
from appliance.serving.context import Surface
from appliance.serving.errors import ApiError, ErrorCode

MAX_URL_BYTES = 16 * 1024  # path and query; browsers and proxies stop well below this
MAX_HEAD_BYTES = 64 * 1024  # request line and every header together
TOO_MANY_RETRY_S = 5

log = logging.getLogger("appliance.gateway.http")


class _Refused(Exception):
    """Raised from a parser callback: the parser stops and reports it as its own error."""


def refusal(code: ErrorCode, message: str, surface: Surface, retry_after: int | None = None) -> bytes:
    """A whole HTTP/1.1 response, enveloped like every other error, that closes the connection."""
    request_id = new_request_id()
    response = error_response(ApiError(code, message, retry_after=retry_after), surface, request_id)
    head = [f"HTTP/1.1 {response.status_code} {_REASONS[response.status_code]}",
            "content-type: application/json", f"content-length: {len(response.body)}",
            f"x-scaigrid-request-id: {request_id}", f"x-request-id: {request_id}", "connection: close"]
    if retry_after is not None:
        head.append(f"retry-after: {retry_after}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + bytes(response.body)


_REASONS = {400: "Bad Request", 413: "Content Too Large", 422: "Unprocessable Content", 429: "Too Many Requests"}
_HEAD_TOO_LARGE = (ErrorCode.PAYLOAD_TOO_LARGE,
                   f"The request line and headers are larger than the limit of {MAX_HEAD_BYTES} bytes.")


class BoundedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with explicit head limits, read time limits, a per-client connection cap and
    enveloped parser errors (the limits: ``configured(settings)``)."""

    header_timeout_s: ClassVar[float] = 10.0
    body_timeout_s: ClassVar[float] = 30.0
    max_connections_per_client: ClassVar[int] = 256
    _clients: ClassVar[Counter[str]] = Counter()  # open connections by client address, in this process

    _head_bytes = 0  # bytes received since the message began, while its head is incomplete
    _header_bytes = 0  # bytes of the headers parsed so far
    _in_head = True
    _in_body = False
    _refusal: tuple[ErrorCode, str] | None = None
    _address: str | None = None  # counted in _clients
    _timer: asyncio.TimerHandle | None = None

    @classmethod
    def configured(cls, settings: Settings) -> type[BoundedHttpProtocol]:
        """This protocol with the limits of ``settings`` (uvicorn makes each connection's instance itself)."""
        limits: dict[str, Any] = {"header_timeout_s": settings.http_header_timeout_s,
                                  "body_timeout_s": settings.http_body_timeout_s,
                                  "max_connections_per_client": settings.max_connections_per_client,
                                  "_clients": Counter()}
        return type(cls.__name__, (cls,), limits)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        address = self.client[0] if self.client else ""
        if self._clients[address] >= self.max_connections_per_client:
            log.warning("refused a connection from %s: it already has %d open", address or "a local socket",
                        self._clients[address])
            transport.write(refusal(ErrorCode.RATE_LIMITED, f"This client already has "
                                    f"{self.max_connections_per_client} connections open to the appliance; close "
                                    "some or reuse them.", self.surface_for("/"), retry_after=TOO_MANY_RETRY_S))
            transport.close()
            return
        self._address = address
        self._clients[address] += 1
        self._arm(self.header_timeout_s)  # a connection that sends nothing is closed, too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._address is not None:
            self._clients[self._address] -= 1
            if self._clients[self._address] <= 0:
                del self._clients[self._address]
            self._address = None
        super().connection_lost(exc)

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._timed_out)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self._in_body and self.flow.read_paused:  # the app reads slowly, not the client: wait on
            self._arm(self.body_timeout_s)
            return
        where = "its request body" if self._in_body else "the request line and headers"
        log.info("closed a connection from %s: %s did not arrive in time",
                 self.client[0] if self.client else "a local socket", where)
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
            if self._timer is None:  # the first bytes of a message on a kept-alive connection
                self._arm(self.header_timeout_s)
        elif self._in_body:
            self._arm(self.body_timeout_s)  # the body's silence is measured from its last bytes
        super().data_received(data)
        # Counted after parsing: a chunk that also holds the start of a body completed the head first.
        if self._in_head and self._head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
            self._refusal = _HEAD_TOO_LARGE
            self.send_400_response("")

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > MAX_URL_BYTES:
            self._refusal = (ErrorCode.PAYLOAD_TOO_LARGE,
                             f"The URL is longer than the limit of {MAX_URL_BYTES} bytes.")
            raise _Refused

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > MAX_HEAD_BYTES:  # a head that arrived whole, in one read
            self._refusal = _HEAD_TOO_LARGE
            raise _Refused

    def on_headers_complete(self) -> None:
        self._in_head, self._in_body = False, True
        self._arm(self.body_timeout_s)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()
        self._in_head, self._in_body, self._head_bytes, self._header_bytes = True, False, 0, 0

    def send_400_response(self, msg: str) -> None:
        code, message = self._refusal or (
            ErrorCode.VALIDATION_ERROR, "The request is not valid HTTP/1.1 (a malformed request line or header); "
                                        "it was not processed.")
        path = self.url.decode("latin-1").split("?", 1)[0] if self.url else "/"
        self.transport.write(refusal(code, message, self.surface_for(path)))
        self.transport.close()

    def surface_for(self, path: str) -> Surface:
        return surface_for_path(path)
