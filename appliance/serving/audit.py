"""Audit events of service calls: a change and its event in one transaction, and the audit log's queries.

A service that changes state runs the change through :func:`audited`: the
change and its SUCCESS event commit together or not at all. A request that
fails (refused, not found, bad input) changes nothing, and the gateway then
records its FAILURE event on its own (gateway/audit.py), with what the service
had learnt of it (:func:`expect`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from appliance.protocol.audit import AuditItem, AuditPage, AuditQuery
from appliance.serving.context import Call
from appliance.serving.errors import ApiError, ErrorCode, validation_error
from appliance.serving.runtime import Runtime
from appliance.tenancy.audit import AuditEvent, AuditFilter
from appliance.tenancy.caller import Caller

T = TypeVar("T")
MAX_EXPORT_DAYS = 366  # the widest window an export may ask for


def event_for(call: Call, action: str, resource_type: str | None, resource_id: str | None = None,
              tenant_id: str | None = None, details: dict[str, Any] | None = None) -> AuditEvent:
    """The event of ``call`` doing ``action`` to a resource (in ``tenant_id``: default the caller's)."""
    caller = call.caller
    return AuditEvent(action=action, actor_id=caller.actor_id, actor_email=caller.actor_email,
                      actor_type=caller.actor_type, actor_key_id=caller.key.id,
                      tenant_id=tenant_id or caller.tenant_id, resource_type=resource_type, resource_id=resource_id,
                      ip_address=call.client_ip, user_agent=call.user_agent, request_id=call.request_id or None,
                      details=details)


def expect(call: Call, event: AuditEvent) -> None:
    """What the call is about to do: the event the gateway records as a FAILURE if it does not succeed."""
    call.fields["audit_event"] = event


async def audited(call: Call, event: AuditEvent, work: Callable[[Session], T], room: bool = False) -> T:
    """Run ``work`` (the change, in the given session) and append ``event`` in the same transaction (``room``: a
    repair that must commit on a full disk too, with the state DB's reserve given back if need be)."""
    expect(call, event)
    audit = call.runtime.audit

    def run() -> T:
        with audit.change(event) as session:
            return work(session)

    result = await asyncio.to_thread(call.runtime.disk_reserve.with_room if room else _now, run)
    call.fields["audited"] = True  # the gateway records nothing more for this request
    return result


async def noted(call: Call, event: AuditEvent) -> None:
    """Record a SUCCESS of an action that changed nothing in the state DB (a model loaded, unloaded)."""
    await asyncio.to_thread(call.runtime.audit.record, event)
    call.fields["audited"] = True


def _now(work: Callable[[], T]) -> T:
    return work()


def scoped(caller: Caller, query: AuditQuery) -> AuditFilter:
    """The query's filter within what the caller sees: its tenant's events, or (a box admin) every tenant's."""
    tenant_id = query.tenant_id
    if caller.reach("admin:access") != "box":
        if tenant_id is not None and tenant_id != caller.tenant_id:
            raise ApiError(ErrorCode.NOT_FOUND, f"No tenant '{tenant_id}' whose audit log this key may read.")
        tenant_id = caller.tenant_id
    return AuditFilter(start=query.start, end=query.end, action=query.action, actor_id=query.actor_id,
                       resource_type=query.resource_type, resource_id=query.resource_id, status=query.status,
                       ip_address=query.ip_address, tenant_id=tenant_id)


def item_of(row: Any) -> AuditItem:
    return AuditItem.model_validate(row, from_attributes=True)


async def page(runtime: Runtime, caller: Caller, query: AuditQuery) -> AuditPage:
    rows, next_cursor = await asyncio.to_thread(runtime.audit.page, scoped(caller, query), query.limit,
                                                query.cursor)
    return AuditPage(items=[item_of(row) for row in rows], next_cursor=str(next_cursor) if next_cursor else None,
                     has_more=next_cursor is not None)


async def event(runtime: Runtime, caller: Caller, event_id: str) -> AuditItem:
    row = await asyncio.to_thread(runtime.audit.get, event_id)
    if row is None or not caller.sees_tenant(row.tenant_id, "admin:access"):
        raise ApiError(ErrorCode.NOT_FOUND, f"No audit event '{event_id[:80]}' this key may read.")
    return item_of(row)


def export_window(start: datetime | None, end: datetime | None, now: datetime) -> tuple[datetime, datetime]:
    """The window of an export: both ends default (the last 30 days), at most ``MAX_EXPORT_DAYS`` wide."""
    end = end or now
    start = start or end - timedelta(days=30)
    if end - start > timedelta(days=MAX_EXPORT_DAYS):
        raise validation_error("start", f"the export window is {(end - start).days} days wide; at most "
                                        f"{MAX_EXPORT_DAYS} days can be exported at once, so export it in parts")
    return start, end


def export_rows(runtime: Runtime, where: AuditFilter) -> Iterator[list[Any]]:
    """The events of the export, a few hundred at a time (read in a thread by the streaming answer)."""
    return runtime.audit.batches(where)
