"""From an HTTP request to a service call and back: the ``Call`` a route hands its service, and the answer.

The route's surface (set on the request by its route, ``routing.py``) decides
how a service's result goes out: the ScaiGrid envelope on ``/v1``, the bare
OpenAI object on ``/oai/v1``; a ``Stream`` goes out as it comes, either way.
"""

from __future__ import annotations

import functools

import anyio
from fastapi import Request, Response
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from appliance.gateway.errors import ok_raw, stream_error_body
from appliance.gateway.routing import surface_of
from appliance.serving.context import Call, Surface
from appliance.serving.streaming import Stream
from appliance.tenancy.caller import Caller


def client_of(scope: Scope) -> tuple[str | None, str | None]:
    """The peer's address and the User-Agent it sent (what the audit log records of a request)."""
    client = scope.get("client")
    agent = next((value.decode("latin-1") for name, value in scope.get("headers", []) if name == b"user-agent"), None)
    return (client[0] if client else None), agent


def call_of(request: Request, caller: Caller) -> Call:
    """The call of ``caller`` this request is: its record is the request's own state."""
    scope = request.scope
    ip, agent = client_of(scope)
    surface = surface_of(scope)
    return Call(request.app.state, caller, surface, lambda: str(request.base_url), scope.setdefault("state", {}),
                client_ip=ip, user_agent=agent, stream_error=STREAM_ERRORS[surface],
                gone=functools.partial(gone, request))


async def gone(request: Request) -> None:
    """Returns once the request's client has disconnected. Asked only after the route has read the whole body (a
    service's call waiting for a slot), when the next ASGI message can only be the disconnect; Starlette's own
    watch on a streamed answer reads it too, which the server allows (it answers every read after with it)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


STREAM_ERRORS = {surface: functools.partial(stream_error_body, surface=surface) for surface in Surface}


def respond(call: Call, request: Request, result: bytes | Stream) -> Response:
    """A service's answer: its JSON in the surface's shape, or its stream."""
    if isinstance(result, Stream):
        return RelayResponse(result.chunks, media_type=result.media_type, headers=result.headers)
    if call.surface is Surface.SCAIGRID:
        return ok_raw(result, request)
    return Response(result, media_type="application/json")


class RelayResponse(StreamingResponse):
    """A StreamingResponse that always closes its chunks, hence the upstream connection, when it ends.

    Starlette cancels a response whose client went away while it waits to send,
    which leaves the chunk generator suspended at a ``yield``; closed only by the
    garbage collector, it would keep vLLM generating for nobody.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()  # type: ignore[attr-defined]
