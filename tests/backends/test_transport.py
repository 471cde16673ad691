"""The transport sends each request once, and once more only when the server never saw it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from appliance.backends.transport import Endpoint

ANSWER = b'{"ok":true}'


async def closing_server(path: Path, seen: list[bytes]) -> asyncio.AbstractServer:
    """A real server on a Unix socket that answers each request as keep-alive, then closes the connection at
    once: what an engine server does when its keep-alive timeout ends just as the connection is reused."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        seen.append(await reader.readexactly(length))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: keep-alive\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(ANSWER), ANSWER))
        await writer.drain()
        writer.close()

    return await asyncio.start_unix_server(handle, str(path))


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_a_request_on_a_connection_the_server_closed_is_sent_again_and_runs_once(tmp_path: Path,
                                                                                 loop_kind: str) -> None:
    async def scenario() -> None:
        seen: list[bytes] = []
        server = await closing_server(tmp_path / "engine.sock", seen)
        endpoint = Endpoint.unix(tmp_path / "engine.sock", timeout_s=10)
        try:
            for n in range(100):  # back to back: each reuses the connection the server is closing
                status, _headers, body = await endpoint.post_bytes("/embeddings", json.dumps({"n": n}).encode())
                assert (status, body) == (200, ANSWER)
        finally:
            await endpoint.aclose()
            server.close()
        assert [json.loads(body)["n"] for body in seen] == list(range(100))  # each ran exactly once

    if loop_kind == "uvloop":
        import uvloop
        uvloop.run(scenario())
    else:
        asyncio.run(scenario())
