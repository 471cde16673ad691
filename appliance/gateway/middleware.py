"""The outermost layer of the gateway: request ids, response headers, body limit, metrics, the audit of failures.

A plain ASGI wrapper rather than Starlette's BaseHTTPMiddleware: it adds no task
or copy per request, and it sees even the answers the framework fails to make.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from appliance.gateway.audit import record_outcome
from appliance.gateway.errors import error_response
from appliance.gateway.routing import surface_of
from appliance.ids import new_id
from appliance.metrics import LATENCY, REQUESTS
from appliance.serving import metering
from appliance.serving.errors import ApiError, ErrorCode

log = logging.getLogger("appliance.gateway")

_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def new_request_id() -> str:
    return new_id("req_")


class PayloadTooLarge(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(ErrorCode.PAYLOAD_TOO_LARGE, f"The request body is larger than the limit of {limit} bytes.")


class RequestContext:
    """Gives each request its id and stamps it (``X-Scaigrid-Request-Id``, ``x-request-id``) and the ScaiGrid headers
    on every answer."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        given = _header(scope, b"x-request-id")
        request_id = given if given and _CLIENT_ID.match(given) else new_request_id()
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        request_id_bytes = request_id.encode()
        status_holder = [500]
        response_started = False
        runtime = getattr(self.app, "state", None)

        async def send_with_headers(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.body" and not message.get("more_body") and state.get("metered"):
                await metering.settle(runtime, state, status_holder[0])  # before the client sees the end
            if message["type"] == "http.response.start":
                response_started = True
                await record_outcome(runtime, scope, state, message["status"])  # before the client sees the answer
                status_holder[0] = message["status"]
                headers = list(message.get("headers", []))
                # The same id under OpenAI's name: the SDKs read it (``response._request_id``) on either surface.
                headers += [(b"x-scaigrid-request-id", request_id_bytes), (b"x-request-id", request_id_bytes)]
                for key, header in (("model", b"x-scaigrid-model"), ("backend", b"x-scaigrid-backend")):
                    if state.get(key):
                        headers.append((header, str(state[key]).encode()))
                for name, value in state.get("ratelimit_headers", {}).items():
                    if name.lower() not in {k.decode().lower() for k, _ in headers}:
                        headers.append((name.lower().encode(), str(value).encode()))
                message = {**message, "headers": headers}
            await send(message)

        limit = self.max_body_bytes
        if not _route_has_own_limit(scope):
            declared = _header(scope, b"content-length")
            if declared and declared.isdigit() and int(declared) > limit:
                state["error_code"] = ErrorCode.PAYLOAD_TOO_LARGE.value
                await error_response(PayloadTooLarge(limit), surface_of(scope), request_id)(scope, receive,
                                                                                           send_with_headers)
                self._record(scope, state, 413, started)
                return
            receive = _limited(receive, limit)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            log.exception("unhandled error in %s %s (request %s)", scope.get("method"), scope["path"], request_id)
            if not response_started:
                err = ApiError(ErrorCode.INTERNAL_ERROR, "The appliance failed to handle this request; it is logged.")
                state["error_code"] = err.code.value
                await error_response(err, surface_of(scope), request_id)(scope, receive, send_with_headers)
        finally:
            if state.get("metered"):  # a client that left never saw the end: settled here
                route = getattr(scope.get("route"), "path", None) or scope["path"]
                await metering.finish(runtime, state, route, status_holder[0], started)
            self._record(scope, state, status_holder[0], started)

    @staticmethod
    def _record(scope: Scope, state: dict[str, Any], status: int, started: float) -> None:
        route = scope.get("route")
        route_path = getattr(route, "path", None) or "unmatched"
        model = str(state.get("model") or "")
        REQUESTS.labels(route_path, model, str(status)).inc()
        LATENCY.labels(route_path, model).observe(time.perf_counter() - started)


# Routes that take uploads enforce their own, larger limit while streaming the body.
UPLOAD_PATHS = ("/v1/inference/audio/transcribe", "/oai/v1/audio/transcriptions")


def _route_has_own_limit(scope: Scope) -> bool:
    return scope["path"] in UPLOAD_PATHS


def _limited(receive: Receive, limit: int) -> Receive:
    """A body without Content-Length is counted as it arrives."""
    seen = 0

    async def counting_receive() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise PayloadTooLarge(limit)
        return message

    return counting_receive


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None
