"""GET /v1/accounting/usage, /usage/summary and /export: what the caller may see (serving/usage.py)."""

from __future__ import annotations

from typing import Annotated, TypeVar

from fastapi import Depends, Request, Response
from fastapi.responses import JSONResponse

from appliance.gateway.auth import authenticated
from appliance.gateway.body import parse_query
from appliance.gateway.calls import call_of, respond
from appliance.gateway.errors import ok
from appliance.gateway.openapi import KEYED, Envelope, documented, json_ok, raw_ok
from appliance.gateway.routing import api_router
from appliance.protocol.accounting import ExportQuery, SummaryQuery, UsagePage, UsageQuery, UsageSummary, utc
from appliance.serving.errors import ErrorCode, validation_error
from appliance.serving.usage import usage_export, usage_page, usage_summary
from appliance.tenancy.caller import Caller

router = api_router()

Key = Annotated[Caller, Depends(authenticated)]
Q = TypeVar("Q", UsageQuery, SummaryQuery, ExportQuery)
FILTERED = (*KEYED, ErrorCode.NOT_FOUND)  # a key, user or tenant named that the caller may not see


def _query(request: Request, model: type[Q]) -> Q:
    query = parse_query(request, model)
    if query.start is not None and query.end is not None and query.start > query.end:
        raise validation_error("start", "start is after end")
    return query.model_copy(update={"start": utc(query.start), "end": utc(query.end)})


@router.get("/v1/accounting/usage", **documented(
    ok=json_ok(Envelope[UsagePage], "usage rows, newest first"), errors=FILTERED))
async def usage(request: Request, key: Key) -> JSONResponse:
    return ok((await usage_page(request.app.state, key, _query(request, UsageQuery))).model_dump(mode="json"), request)


@router.get("/v1/accounting/usage/summary", **documented(
    ok=json_ok(Envelope[UsageSummary], "usage summed per group"), errors=FILTERED))
async def summary(request: Request, key: Key) -> JSONResponse:
    return ok((await usage_summary(request.app.state, key, _query(request, SummaryQuery))).model_dump(mode="json"),
              request)


@router.get("/v1/accounting/export", response_class=Response, **documented(
    ok=raw_ok(["text/csv", "application/json", "application/x-ndjson"], "the usage rows of the window, oldest "
              "first, streamed", text=True), errors=FILTERED))
async def export(request: Request, key: Key) -> Response:
    stream = await usage_export(request.app.state, key, _query(request, ExportQuery))
    return respond(call_of(request, key), request, stream)
