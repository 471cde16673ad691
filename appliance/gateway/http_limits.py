"""The HTTP server's own refusals, capped and enveloped: requests that never reach the app.

uvicorn's httptools parser has no limit on the request line or headers, and it
answers what it cannot parse with a plain-text 400. This protocol class caps
the URL and the whole head explicitly and answers both refusals in the
contract's envelope (the OpenAI shape under ``/oai/``), on a closing connection.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from appliance.gateway.errors import error_response
from appliance.gateway.middleware import new_request_id
from appliance.gateway.routing import surface_for_path
from appliance.serving.context import Surface
from appliance.serving.errors import ApiError, ErrorCode

MAX_URL_BYTES = 16 * 1024  # path and query; browsers and proxies stop well below this
MAX_HEAD_BYTES = 64 * 1024  # request line and every header together


class _Refused(Exception):
    """Raised from a parser callback: the parser stops and reports it as its own error."""


def refusal(code: ErrorCode, message: str, surface: Surface) -> bytes:
    """A whole HTTP/1.1 response, enveloped like every other error, that closes the connection."""
    request_id = new_request_id()
    response = error_response(ApiError(code, message), surface, request_id)
    head = [f"HTTP/1.1 {response.status_code} {_REASONS[response.status_code]}",
            "content-type: application/json", f"content-length: {len(response.body)}",
            f"x-scaigrid-request-id: {request_id}", f"x-request-id: {request_id}", "connection: close"]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + bytes(response.body)


_REASONS = {400: "Bad Request", 413: "Content Too Large", 422: "Unprocessable Content"}
_HEAD_TOO_LARGE = (ErrorCode.PAYLOAD_TOO_LARGE,
                   f"The request line and headers are larger than the limit of {MAX_HEAD_BYTES} bytes.")


class BoundedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with explicit head limits and enveloped parser errors."""

    _head_bytes = 0  # bytes received since the message began, while its head is incomplete
    _header_bytes = 0  # bytes of the headers parsed so far
    _in_head = True
    _refusal: tuple[ErrorCode, str] | None = None

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
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
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head, self._head_bytes, self._header_bytes = True, 0, 0

    def send_400_response(self, msg: str) -> None:
        code, message = self._refusal or (
            ErrorCode.VALIDATION_ERROR, "The request is not valid HTTP/1.1 (a malformed request line or header); "
                                        "it was not processed.")
        path = self.url.decode("latin-1").split("?", 1)[0] if self.url else "/"
        self.transport.write(refusal(code, message, self.surface_for(path)))
        self.transport.close()

    def surface_for(self, path: str) -> Surface:
        return surface_for_path(path)
