"""Which requests the audit log records, and the record of those a service did not record itself.

Every mutating request (POST, PUT, PATCH, DELETE) of a route below is
audited; inference (the metered routes) is not: its record is its usage row.
A service that changes state records its SUCCESS in the same transaction as
the change (serving/audit.py). Whatever else an audited request ends as — a
refused key, a missing permission, another tenant's id, bad input, a failure
— is recorded here, as FAILURE, before its answer leaves; so is the success
of an action that wrote nothing to the state DB (a batch or file created).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from starlette.types import Scope

from appliance.gateway.calls import client_of
from appliance.tenancy.audit import AuditEvent
from appliance.tenancy.caller import Caller

log = logging.getLogger("appliance.gateway")

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Audited:
    action: str
    resource_type: str
    resource_param: str | None = None  # the path parameter naming the resource


# (method, route path) → what the request does. tests/gateway/test_audit_routes.py keeps every mutating route that
# is not inference in this table.
AUDITED: dict[tuple[str, str], Audited] = {
    ("POST", "/v1/api-keys"): Audited("api_key.create", "api_key"),
    ("PATCH", "/v1/api-keys/{key_id}"): Audited("api_key.update", "api_key", "key_id"),
    ("DELETE", "/v1/api-keys/{key_id}"): Audited("api_key.delete", "api_key", "key_id"),
    ("POST", "/v1/users"): Audited("user.create", "user"),
    ("PATCH", "/v1/users/{user_id}"): Audited("user.update", "user", "user_id"),
    ("PUT", "/v1/users/{user_id}/roles"): Audited("user.role_update", "user", "user_id"),
    ("DELETE", "/v1/users/{user_id}"): Audited("user.delete", "user", "user_id"),
    ("POST", "/v1/tenants"): Audited("tenant.create", "tenant"),
    ("PATCH", "/v1/tenants/{tenant_id}"): Audited("tenant.update", "tenant", "tenant_id"),
    ("DELETE", "/v1/tenants/{tenant_id}"): Audited("tenant.delete", "tenant", "tenant_id"),
    ("POST", "/v1/admin/models/{slug:path}/load"): Audited("model.load", "model", "slug"),
    ("POST", "/v1/admin/models/{slug:path}/unload"): Audited("model.unload", "model", "slug"),
    ("POST", "/v1/inference/batch"): Audited("batch.create", "batch"),
    ("POST", "/v1/inference/batch/{batch_id}/cancel"): Audited("batch.cancel", "batch", "batch_id"),
    ("POST", "/oai/v1/batches"): Audited("batch.create", "batch"),
    ("POST", "/oai/v1/batches/{batch_id}/cancel"): Audited("batch.cancel", "batch", "batch_id"),
    ("POST", "/oai/v1/files"): Audited("file.create", "file"),
    ("DELETE", "/oai/v1/files/{file_id}"): Audited("file.delete", "file", "file_id"),
}


def audited_route(scope: Scope) -> Audited | None:
    """What the request's route does, if it is an audited mutation."""
    if scope.get("method") not in MUTATING:
        return None
    route = scope.get("route")
    path = getattr(route, "path", None)
    return AUDITED.get((scope["method"], path)) if path else None


def _event(scope: Scope, state: dict[str, Any], audited: Audited, status: int) -> AuditEvent:
    event: AuditEvent | None = state.get("audit_event")  # what the service had learnt of the request
    if event is None:
        caller: Caller | None = state.get("caller")
        ip, agent = client_of(scope)
        resource = (scope.get("path_params") or {}).get(audited.resource_param) if audited.resource_param else None
        event = AuditEvent(action=audited.action, resource_type=audited.resource_type, resource_id=resource,
                           ip_address=ip, user_agent=agent, request_id=state.get("request_id"))
        if caller is not None:
            event.actor_id, event.actor_email, event.actor_type = caller.actor_id, caller.actor_email, \
                caller.actor_type
            event.actor_key_id, event.tenant_id = caller.key.id, caller.tenant_id
    if status >= 400:
        event.status = "FAILURE"
        event.details = {**(event.details or {}), "status_code": status, "error_code": state.get("error_code")}
    return event


async def record_outcome(runtime: Any, scope: Scope, state: dict[str, Any], status: int) -> None:
    """Record an audited request that its service did not (its failure, or a success that wrote no row)."""
    if state.get("audited") or runtime is None:
        return
    audited = audited_route(scope)
    if audited is None:
        return
    state["audited"] = True
    try:
        await asyncio.to_thread(runtime.audit.record, _event(scope, state, audited, status))
    except Exception:  # the answer still goes out; a DB that refuses the event is logged loudly
        log.exception("could not record the audit event of request %s", state.get("request_id"))
