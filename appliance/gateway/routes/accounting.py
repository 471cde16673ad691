"""GET /v1/accounting/usage and /v1/accounting/usage/summary: a key sees its own usage, admin:access all."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from appliance.accounting.periods import period_start
from appliance.accounting.service import Accounting
from appliance.accounting.store import UsageFilter
from appliance.db.keys import ApiKey
from appliance.gateway.routing import api_router
from appliance.gateway.auth import authenticated
from appliance.gateway.errors import ApiError, ErrorCode, from_validation_error, ok, validation_error
from appliance.gateway.openapi import KEYED, Envelope, documented, json_ok
from appliance.protocol.accounting import (SummaryQuery, SummaryRow, UsageItem, UsagePage, UsageQuery, UsageSummary,
                                           utc)

router = api_router()

FLUSH_WAIT_S = 2.0  # at most, for the writer; a DB that refuses rows must not hang the reader

Key = Annotated[ApiKey, Depends(authenticated)]
Q = TypeVar("Q", UsageQuery, SummaryQuery)


def parse_query(request: Request, model: type[Q]) -> Q:
    try:
        query = model.model_validate(dict(request.query_params))
    except ValidationError as exc:
        raise from_validation_error(exc) from None
    if query.start is not None and query.end is not None and query.start > query.end:
        raise validation_error("start", "start is after end")
    return query.model_copy(update={"start": utc(query.start), "end": utc(query.end)})


def scoped(key: ApiKey, query: UsageQuery | SummaryQuery, start: datetime | None) -> UsageFilter:
    """The filter of the query, within what the key may see."""
    key_id = query.key_id
    if "admin:access" not in key.permissions:
        if key_id is not None and key_id != key.id:
            raise ApiError(ErrorCode.AUTHZ_PERMISSION_DENIED, "Only an admin:access key sees other keys' usage.")
        key_id = key.id
    return UsageFilter(start=start, end=query.end, model=query.model, backend_id=query.backend_id, key_id=key_id)


async def _written(request: Request) -> Accounting:
    """This gateway's accounting, once the usage rows it has queued are written: a client reads its own requests."""
    accounting: Accounting = request.app.state.accounting
    await asyncio.to_thread(accounting.recorder.flush, FLUSH_WAIT_S)
    return accounting


@router.get("/v1/accounting/usage", **documented(
    ok=json_ok(Envelope[UsagePage], "usage rows, newest first"), errors=KEYED))
async def usage(request: Request, key: Key) -> JSONResponse:
    query = parse_query(request, UsageQuery)
    where = scoped(key, query, query.start)
    accounting = await _written(request)
    rows, next_cursor = await asyncio.to_thread(accounting.usage.page, where, query.limit, query.cursor)
    page = UsagePage(items=[UsageItem.model_validate(row, from_attributes=True) for row in rows],
                     next_cursor=str(next_cursor) if next_cursor else None, has_more=next_cursor is not None)
    return ok(page.model_dump(mode="json"), request)


@router.get("/v1/accounting/usage/summary", **documented(
    ok=json_ok(Envelope[UsageSummary], "usage summed per group"), errors=KEYED))
async def summary(request: Request, key: Key) -> JSONResponse:
    query = parse_query(request, SummaryQuery)
    start = query.start or period_start(query.period, datetime.now(UTC))
    where = scoped(key, query, start)
    accounting = await _written(request)
    rows = await asyncio.to_thread(accounting.usage.summary, where, query.group_by)
    result = UsageSummary(period=query.period, group_by=query.group_by, start=start, end=query.end,
                          rows=[SummaryRow(**row) for row in rows])  # type: ignore[arg-type]
    return ok(result.model_dump(mode="json"), request)


