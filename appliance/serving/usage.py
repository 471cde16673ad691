"""The usage service: usage rows, summaries and exports, within what the caller may see.

- any key: its own usage;
- ``accounting:view_own``: every key of its user;
- ``accounting:view_tenant``: its whole tenant;
- ``accounting:view_partner`` (a box admin): the whole box.

A key, user or tenant named in a filter but outside that view is NOT_FOUND,
exactly like one that does not exist: nothing confirms another tenant's ids.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.accounting.periods import period_start
from appliance.accounting.service import Accounting
from appliance.accounting.store import UsageFilter
from appliance.db.tables import ApiKeyRow, TenantRow, UserRow
from appliance.protocol.accounting import (ExportQuery, SummaryQuery, SummaryRow, UsageItem, UsagePage, UsageQuery,
                                           UsageSummary)
from appliance.serving.audit import export_window
from appliance.serving.errors import ApiError, ErrorCode
from appliance.serving.exports import export
from appliance.serving.runtime import Runtime
from appliance.serving.streaming import Stream
from appliance.tenancy.caller import Caller

FLUSH_WAIT_S = 2.0  # at most, for the writer; a DB that refuses rows must not hang the reader
USAGE_COLUMNS = ["id", "created_at", "request_id", "tenant_id", "user_id", "key_id", "model", "backend_id", "route",
                 "status_code", "error_code", "latency_ms", "tokens_in", "tokens_out", "images", "image_size",
                 "audio_seconds_in", "audio_seconds_out", "characters", "cost"]


@dataclass(frozen=True)
class View:
    """What a caller's usage queries are bounded by: one of key, user or tenant (none: the whole box)."""

    key_id: str | None = None
    user_id: str | None = None
    tenant_id: str | None = None


def view_of(caller: Caller) -> View:
    if caller.reach("accounting:view_partner") == "box":
        return View()
    if caller.can("accounting:view_tenant"):
        return View(tenant_id=caller.tenant_id)
    if caller.can("accounting:view_own") and caller.user_id is not None:
        return View(user_id=caller.user_id)
    return View(key_id=caller.key.id)


def _owner_of(session: Session, kind: str, object_id: str) -> tuple[str | None, str | None] | None:
    """(tenant, user) of a key, a user or a tenant, deleted ones included; None if there is none."""
    if kind == "key":
        row = session.execute(select(ApiKeyRow.tenant_id, ApiKeyRow.assigned_user_id)
                              .where(ApiKeyRow.id == object_id)).first()
        return (row[0], row[1]) if row else None
    if kind == "user":
        tenant = session.scalar(select(UserRow.tenant_id).where(UserRow.id == object_id))
        return (tenant, object_id) if tenant else None
    found = session.scalar(select(TenantRow.id).where(TenantRow.id == object_id))
    return (found, None) if found else None


def _check_visible(runtime: Runtime, caller: Caller, view: View, kind: str, object_id: str) -> None:
    with Session(runtime.keys.engine) as session:
        owner = _owner_of(session, kind, object_id)
    if owner is None:
        visible = False
    elif view == View():  # the whole box
        visible = True
    elif owner[0] != caller.tenant_id:
        visible = False
    elif view.tenant_id is not None or kind == "tenant":  # a tenant's, or the caller's own tenant named
        visible = True
    elif view.user_id is not None:
        visible = owner[1] == caller.user_id
    else:
        visible = object_id in (caller.key.id, caller.user_id)
    if not visible:
        raise ApiError(ErrorCode.NOT_FOUND, f"No {kind} '{object_id[:80]}' whose usage this key may see.")


def scoped(runtime: Runtime, caller: Caller, query: UsageQuery | SummaryQuery | ExportQuery,
           start: datetime | None) -> UsageFilter:
    """The filter of the query, within what the caller may see (NOT_FOUND for a named id outside it)."""
    view = view_of(caller)
    for kind, object_id in (("key", query.key_id), ("user", query.user_id), ("tenant", query.tenant_id)):
        if object_id is not None:
            _check_visible(runtime, caller, view, kind, object_id)
    return UsageFilter(start=start, end=query.end, model=query.model, backend_id=query.backend_id,
                       key_id=query.key_id or view.key_id, user_id=query.user_id or view.user_id,
                       tenant_id=query.tenant_id or view.tenant_id)


async def _written(runtime: Runtime) -> Accounting:
    """This gateway's accounting, once the usage rows it has queued are written: a client reads its own requests."""
    accounting = runtime.accounting
    await asyncio.to_thread(accounting.recorder.flush, FLUSH_WAIT_S)
    return accounting


async def usage_page(runtime: Runtime, caller: Caller, query: UsageQuery) -> UsagePage:
    start = query.start or (period_start(query.period, datetime.now(UTC)) if query.period else None)
    where = await asyncio.to_thread(scoped, runtime, caller, query, start)
    accounting = await _written(runtime)
    rows, next_cursor = await asyncio.to_thread(accounting.usage.page, where, query.limit, query.cursor)
    return UsagePage(items=[UsageItem.model_validate(row, from_attributes=True) for row in rows],
                     next_cursor=str(next_cursor) if next_cursor else None, has_more=next_cursor is not None)


async def usage_summary(runtime: Runtime, caller: Caller, query: SummaryQuery) -> UsageSummary:
    start = query.start or period_start(query.period, datetime.now(UTC))
    where = await asyncio.to_thread(scoped, runtime, caller, query, start)
    accounting = await _written(runtime)
    rows = await asyncio.to_thread(accounting.usage.summary, where, query.group_by)
    return UsageSummary(period=query.period, group_by=query.group_by, start=start, end=query.end,
                        rows=[SummaryRow(**row) for row in rows])  # type: ignore[arg-type]


async def usage_export(runtime: Runtime, caller: Caller, query: ExportQuery) -> Stream:
    """The usage rows of a window (at most ``MAX_EXPORT_DAYS`` wide), oldest first, streamed from the DB."""
    start, end = export_window(query.start, query.end, datetime.now(UTC))
    where = await asyncio.to_thread(scoped, runtime, caller, query, start)
    where = replace(where, end=end)
    accounting = await _written(runtime)
    return export(accounting.usage.batches(where), lambda row: UsageItem.model_validate(row, from_attributes=True),
                  USAGE_COLUMNS, query.format, f"usage-{start:%Y%m%d}-{end:%Y%m%d}")
