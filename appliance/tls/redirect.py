"""Plain HTTP (port 80 on an installed box): a redirect to HTTPS for browsers, and nothing else.

GET and HEAD get ``308`` to the same path on HTTPS. Any other method is
refused with the HTTPS address in the message: an API client that sent its key
in clear text should learn that, not be forwarded to carry on unnoticed.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket

from appliance.tls.listener import FIRST_BYTES_TIMEOUT_S, MAX_PLAIN_HEAD, Refusal, parse_head

log = logging.getLogger("appliance.tls")

_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]{1,253})(?::\d{1,5})?$")


def https_location(target: str, host: str | None, https_port: int, public_base_url: str | None) -> str | None:
    """Where a request for ``target`` (Host: ``host``) belongs on HTTPS; None when no valid host is known."""
    path = target if target.startswith("/") else "/"
    if public_base_url:
        return public_base_url.rstrip("/") + path
    match = _HOST_PORT.match(host or "")
    if match is None:
        return None
    port = "" if https_port == 443 else f":{https_port}"
    return f"https://{match[1]}{port}{path}"


class RedirectProtocol(asyncio.Protocol):
    def __init__(self, https_port: int, public_base_url: str | None, refuse: Refusal) -> None:
        self.https_port, self.public_base_url, self.refuse = https_port, public_base_url, refuse
        self.head = b""
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.timer = asyncio.get_running_loop().call_later(FIRST_BYTES_TIMEOUT_S, transport.close)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()

    def data_received(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.head += data
        if b"\r\n\r\n" in self.head or len(self.head) >= MAX_PLAIN_HEAD:
            self.transport.write(self.answer())
            self.transport.close()

    def answer(self) -> bytes:
        parsed = parse_head(self.head)
        if parsed is None:
            return self.refuse("This port answers HTTP requests with a redirect to HTTPS, and this was not an "
                               "HTTP request.", "/")
        method, target, host = parsed
        location = https_location(target, host, self.https_port, self.public_base_url)
        path = target.split("?", 1)[0] if target.startswith("/") else "/"
        if location is None:
            return self.refuse("This port redirects to HTTPS, but the request named no valid Host to redirect to.",
                               path)
        if method not in ("GET", "HEAD"):
            return self.refuse(f"This appliance serves its API over HTTPS only: send the request to {location}. "
                               "It crossed the network unencrypted, with any API key it carried.", path)
        text = f"Moved to {location}\n".encode()
        head = ["HTTP/1.1 308 Permanent Redirect", f"location: {location}", "content-type: text/plain; charset=utf-8",
                f"content-length: {len(text)}", "connection: close"]
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (b"" if method == "HEAD" else text)


async def start_redirect(sock: socket.socket, https_port: int, public_base_url: str | None,
                         refuse: Refusal) -> asyncio.AbstractServer:
    def factory() -> asyncio.Protocol:
        return RedirectProtocol(https_port, public_base_url, refuse)

    return await asyncio.get_running_loop().create_server(factory, sock=sock)
