"""The usage service: a key's own usage rows and summaries, or everyone's for an admin:access key."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from appliance.accounting.periods import period_start
from appliance.accounting.service import Accounting
from appliance.accounting.store import UsageFilter
from appliance.db.keys import ApiKey
from appliance.protocol.accounting import SummaryQuery, SummaryRow, UsageItem, UsagePage, UsageQuery, UsageSummary
from appliance.serving.errors import ApiError, ErrorCode
from appliance.serving.runtime import Runtime

FLUSH_WAIT_S = 2.0  # at most, for the writer; a DB that refuses rows must not hang the reader


def scoped(key: ApiKey, query: UsageQuery | SummaryQuery, start: datetime | None) -> UsageFilter:
    """The filter of the query, within what the key may see."""
    key_id = query.key_id
    if "admin:access" not in key.permissions:
        if key_id is not None and key_id != key.id:
            raise ApiError(ErrorCode.AUTHZ_PERMISSION_DENIED, "Only an admin:access key sees other keys' usage.")
        key_id = key.id
    return UsageFilter(start=start, end=query.end, model=query.model, backend_id=query.backend_id, key_id=key_id)


async def _written(runtime: Runtime) -> Accounting:
    """This gateway's accounting, once the usage rows it has queued are written: a client reads its own requests."""
    accounting = runtime.accounting
    await asyncio.to_thread(accounting.recorder.flush, FLUSH_WAIT_S)
    return accounting


async def usage_page(runtime: Runtime, key: ApiKey, query: UsageQuery) -> UsagePage:
    where = scoped(key, query, query.start)
    accounting = await _written(runtime)
    rows, next_cursor = await asyncio.to_thread(accounting.usage.page, where, query.limit, query.cursor)
    return UsagePage(items=[UsageItem.model_validate(row, from_attributes=True) for row in rows],
                     next_cursor=str(next_cursor) if next_cursor else None, has_more=next_cursor is not None)


async def usage_summary(runtime: Runtime, key: ApiKey, query: SummaryQuery) -> UsageSummary:
    start = query.start or period_start(query.period, datetime.now(UTC))
    where = scoped(key, query, start)
    accounting = await _written(runtime)
    rows = await asyncio.to_thread(accounting.usage.summary, where, query.group_by)
    return UsageSummary(period=query.period, group_by=query.group_by, start=start, end=query.end,
                        rows=[SummaryRow(**row) for row in rows])  # type: ignore[arg-type]
