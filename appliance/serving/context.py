"""Who a service is serving: one ``Call`` per request, built by a route or by the batch runner for a line.

A service reads the appliance's shared parts from ``call.runtime``, the caller
(its key, the key's user and tenant: ``call.caller``, ``call.tenant_id``), where
the request came from (``client_ip``, ``user_agent``: the audit log's), the
surface the call came in on (which decides how its errors and stream
frames look), and writes what the call used (model, backend, meter, error code)
into ``call.fields``: for a live request that is its HTTP scope's state, which
the outermost layer reads for the response headers, metrics and metering.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from appliance.db.keys import ApiKey
from appliance.ids import new_id
from appliance.tenancy.caller import Caller

if TYPE_CHECKING:
    from appliance.serving.errors import ApiError
    from appliance.serving.runtime import Runtime


class Surface(StrEnum):
    """The API a call came in on: ScaiGrid's enveloped ``/v1`` or the plain OpenAI layer."""

    SCAIGRID = "scaigrid"
    OPENAI = "openai"


@dataclass(eq=False)
class Call:
    runtime: Runtime
    caller: Caller
    surface: Surface
    # Where the caller reached the appliance (the default base of the media URLs it is given); asked only when
    # needed: building it from an HTTP request costs more than the rest of the call's set-up.
    locate: Callable[[], str]
    fields: dict[str, Any] = field(default_factory=dict)
    background: bool = False  # a batch line: counted apart from live traffic
    client_ip: str | None = None
    user_agent: str | None = None
    # The data of the frame that ends a stream failing after it began, in the surface's shape (the gateway's to
    # say); None: ScaiGrid's {"code", "message"}.
    stream_error: Callable[[ApiError], dict[str, Any]] | None = None
    # Returns once the client has gone away (the gateway's to say; a call still waiting for a slot of a full model
    # then gives up its place); None: no client to leave (a batch line, a background response).
    gone: Callable[[], Awaitable[None]] | None = None

    @classmethod
    def for_line(cls, runtime: Runtime, caller: Caller, surface: Surface, base_url: str) -> Call:
        """A call of the appliance's own on the caller's behalf (a batch line, a background response): no HTTP
        request behind it, a request id of its own, counted apart from live traffic."""
        return cls(runtime, caller, surface, lambda: base_url, {"request_id": new_id("req_"), "api_key": caller.key,
                                                                "caller": caller}, background=True)

    @property
    def base_url(self) -> str:
        return self.locate()

    @property
    def key(self) -> ApiKey:
        return self.caller.key

    @property
    def tenant_id(self) -> str:
        """The tenant the call runs in (what admission and accounting group by)."""
        return self.caller.tenant.id

    @property
    def request_id(self) -> str:
        return self.fields.get("request_id") or ""

    @property
    def error_code(self) -> str | None:
        return self.fields.get("error_code")

    @error_code.setter
    def error_code(self, code: str | None) -> None:
        self.fields["error_code"] = code

    def served_by(self, model: str | None = None, backend: str | None = None) -> None:
        """Record the model (its slug) and the backend that served the call: its headers and usage row say so."""
        if model is not None:
            self.fields["model"] = model
        if backend is not None:
            self.fields["backend"] = backend
