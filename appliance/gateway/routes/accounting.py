"""GET /v1/accounting/usage and /v1/accounting/usage/summary: a key sees its own usage, admin:access all."""

from __future__ import annotations

from typing import Annotated, TypeVar

from fastapi import Depends, Request
from fastapi.responses import JSONResponse

from appliance.db.keys import ApiKey
from appliance.gateway.auth import authenticated
from appliance.gateway.errors import ok
from appliance.gateway.openapi import KEYED, Envelope, documented, json_ok
from appliance.gateway.body import parse_query
from appliance.gateway.routing import api_router
from appliance.protocol.accounting import SummaryQuery, UsagePage, UsageQuery, UsageSummary, utc
from appliance.serving.errors import validation_error
from appliance.serving.usage import usage_page, usage_summary

router = api_router()

Key = Annotated[ApiKey, Depends(authenticated)]
Q = TypeVar("Q", UsageQuery, SummaryQuery)


def _query(request: Request, model: type[Q]) -> Q:
    query = parse_query(request, model)
    if query.start is not None and query.end is not None and query.start > query.end:
        raise validation_error("start", "start is after end")
    return query.model_copy(update={"start": utc(query.start), "end": utc(query.end)})


@router.get("/v1/accounting/usage", **documented(
    ok=json_ok(Envelope[UsagePage], "usage rows, newest first"), errors=KEYED))
async def usage(request: Request, key: Key) -> JSONResponse:
    return ok((await usage_page(request.app.state, key, _query(request, UsageQuery))).model_dump(mode="json"), request)


@router.get("/v1/accounting/usage/summary", **documented(
    ok=json_ok(Envelope[UsageSummary], "usage summed per group"), errors=KEYED))
async def summary(request: Request, key: Key) -> JSONResponse:
    return ok((await usage_summary(request.app.state, key, _query(request, SummaryQuery))).model_dump(mode="json"), request)
