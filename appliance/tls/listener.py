"""Accept connections on the HTTPS port: TLS for those that open with a handshake, a clear answer for plain HTTP.

The first byte tells them apart (a TLS record of a handshake is 0x16; an HTTP
request starts with a method's letters) and is only peeked at, so the TLS layer
reads the connection from its start. Without this, plain HTTP sent to the
port meets an OpenSSL failure and a closed connection: the client learns nothing.
Each connection takes the certificate in service when it is accepted
(ServedCertificate.context), so a reload changes new connections only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
from collections.abc import Callable

from appliance.tls.context import ServedCertificate

log = logging.getLogger("appliance.tls")

TLS_HANDSHAKE = 0x16
FIRST_BYTES_TIMEOUT_S = 10.0  # a client that connects and says nothing is dropped, as uvicorn drops idle ones
HANDSHAKE_TIMEOUT_S = 10.0
MAX_PLAIN_HEAD = 16 * 1024
_REQUEST_LINE = re.compile(rb"^([A-Z]{3,10}) (\S{1,8192}) HTTP/1\.[01]\r?\n")
_HOST = re.compile(rb"\r\nhost:[ \t]*([A-Za-z0-9.\-:\[\]]{1,300})[ \t]*\r\n", re.IGNORECASE)

ProtocolFactory = Callable[[], asyncio.Protocol]
# (message, path) -> a whole HTTP/1.1 response that closes the connection (the gateway's enveloped refusal)
Refusal = Callable[[str, str], bytes]


def parse_head(head: bytes) -> tuple[str, str, str | None] | None:
    """(method, target, host) of an HTTP/1.x request head, or None when it is not one."""
    match = _REQUEST_LINE.match(head)
    if match is None:
        return None
    host = _HOST.search(head)
    return (match[1].decode(), match[2].decode("latin-1"),
            host[1].decode() if host else None)


class TlsListener:
    """One listening socket; quacks like asyncio.Server where uvicorn's shutdown uses it (close)."""

    def __init__(self, sock: socket.socket, certificate: ServedCertificate, protocol_factory: ProtocolFactory,
                 refuse: Refusal) -> None:
        self.sock = sock
        self.certificate = certificate
        self.protocol_factory = protocol_factory
        self.refuse = refuse
        self.port = sock.getsockname()[1]
        self._accepting: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self.sock.setblocking(False)
        self._accepting = asyncio.get_running_loop().create_task(self._accept())

    def close(self) -> None:
        """Stop accepting; connections not yet past their handshake go too (served ones drain in uvicorn)."""
        if self._accepting is not None:
            self._accepting.cancel()
        for task in list(self._pending):
            task.cancel()
        self.sock.close()

    async def wait_closed(self) -> None:
        if self._accepting is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _peer = await loop.sock_accept(self.sock)
            except OSError as exc:  # EMFILE and the like: log, breathe, go on accepting
                log.warning("accepting a connection failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            task = loop.create_task(self._begin(conn))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _begin(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        handed_over = False
        try:
            first = await asyncio.wait_for(_peek(loop, conn), FIRST_BYTES_TIMEOUT_S)
            if first[:1] == bytes([TLS_HANDSHAKE]):
                handed_over = True  # from here the loop's transport owns the socket and closes it, on failure too
                await loop.connect_accepted_socket(self.protocol_factory, conn, ssl=self.certificate.context,
                                                   ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S)
            elif first[:1].isalpha():
                await self._answer_plain_http(loop, conn)
        except (OSError, TimeoutError, ConnectionError) as exc:  # a failed handshake, a client gone: its own business
            log.debug("connection dropped before its first request: %s", exc)
        finally:
            if not handed_over:
                conn.close()

    async def _answer_plain_http(self, loop: asyncio.AbstractEventLoop, conn: socket.socket) -> None:
        head = b""
        with contextlib.suppress(TimeoutError):
            while b"\r\n\r\n" not in head and len(head) < MAX_PLAIN_HEAD:
                chunk = await asyncio.wait_for(loop.sock_recv(conn, MAX_PLAIN_HEAD), FIRST_BYTES_TIMEOUT_S)
                if not chunk:
                    break
                head += chunk
        parsed = parse_head(head)
        path = parsed[1].split("?", 1)[0] if parsed and parsed[1].startswith("/") else "/"
        host = (parsed[2] if parsed and parsed[2] else None) or f"this-box:{self.port}"
        message = (f"This port speaks HTTPS, and the request came as plain HTTP: call https://{host}{path} instead. "
                   "Any API key the request carried crossed the network unencrypted.")
        await loop.sock_sendall(conn, self.refuse(message, path))
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_WR)
            await asyncio.wait_for(loop.sock_recv(conn, 4096), 1.0)  # let the answer reach the client before close
        log.info("plain HTTP on the HTTPS port %s from a client, answered with how to reach it", self.port)


async def _peek(loop: asyncio.AbstractEventLoop, conn: socket.socket) -> bytes:
    """The first bytes of ``conn``, left in place for whoever reads it next; b'' when the client hung up."""
    while True:
        try:
            return conn.recv(8, socket.MSG_PEEK)
        except BlockingIOError:
            readable = loop.create_future()
            loop.add_reader(conn.fileno(), lambda: readable.done() or readable.set_result(None))
            try:
                await readable
            finally:
                loop.remove_reader(conn.fileno())
