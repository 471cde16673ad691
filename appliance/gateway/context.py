"""Who is calling a service, and where its per-call state goes: a live HTTP request or a batch line.

The services, the relay and metering read only ``app.state`` (catalogue,
supervisor, accounting), ``state`` (request id, model, backend, meter) and the
caller's base URL; a Starlette ``Request`` has all of them, and so does a
``CallContext`` that the batch runner builds for each line without any HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.datastructures import State

from appliance.db.keys import ApiKey
from appliance.ids import new_id


class Caller(Protocol):
    """What a service needs of its caller (a ``Request`` or a ``CallContext``)."""

    @property
    def app(self) -> Any: ...

    @property
    def state(self) -> State: ...

    @property
    def base_url(self) -> Any: ...


@dataclass
class CallContext:
    """A call made by the gateway itself on a key's behalf (a batch line)."""

    app: Any
    key: ApiKey
    base_url: str
    request_id: str = field(default_factory=lambda: new_id("req_"))
    state: State = field(default_factory=State)

    def __post_init__(self) -> None:
        self.state.request_id = self.request_id
        self.state.api_key = self.key

    @property
    def fields(self) -> dict[str, Any]:
        """The state as metering's ``settle`` and ``record`` read it."""
        return self.state._state  # type: ignore[attr-defined, no-any-return]
