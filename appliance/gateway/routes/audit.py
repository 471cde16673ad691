"""/v1/audit-log: the audit events of the caller's tenant (admin:access; a box admin: of every tenant)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, TypeVar

from fastapi import Depends, Request, Response
from fastapi.responses import JSONResponse

from appliance.gateway.auth import require
from appliance.gateway.body import parse_query
from appliance.gateway.calls import call_of, respond
from appliance.gateway.errors import ok
from appliance.gateway.openapi import KEYED, Envelope, documented, json_ok, raw_ok
from appliance.gateway.routing import api_router
from appliance.protocol.accounting import utc
from appliance.protocol.audit import AUDIT_COLUMNS, AuditExportQuery, AuditItem, AuditPage, AuditQuery
from appliance.serving import audit
from appliance.serving.errors import ErrorCode, validation_error
from appliance.serving.exports import export
from appliance.tenancy.caller import Caller

router = api_router()

Admin = Annotated[Caller, Depends(require("admin:access"))]
Q = TypeVar("Q", AuditQuery, AuditExportQuery)
EXPORT_TYPES = ["text/csv", "application/json", "application/x-ndjson"]


def _query(request: Request, model: type[Q]) -> Q:
    query = parse_query(request, model)
    if query.start is not None and query.end is not None and query.start > query.end:
        raise validation_error("start", "start is after end")
    return query.model_copy(update={"start": utc(query.start), "end": utc(query.end)})


@router.get("/v1/audit-log", **documented(ok=json_ok(Envelope[AuditPage], "audit events, newest first"),
                                          errors=(*KEYED, ErrorCode.NOT_FOUND)))
async def audit_log(request: Request, caller: Admin) -> JSONResponse:
    page = await audit.page(request.app.state, caller, _query(request, AuditQuery))
    return ok(page.model_dump(mode="json"), request)


@router.get("/v1/audit-log/export", response_class=Response, **documented(
    ok=raw_ok(EXPORT_TYPES, "the events of the window, oldest first, streamed", text=True),
    errors=(*KEYED, ErrorCode.NOT_FOUND)))
async def audit_export(request: Request, caller: Admin) -> Response:
    query = _query(request, AuditExportQuery)
    start, end = audit.export_window(query.start, query.end, datetime.now(UTC))
    where = audit.scoped(caller, query.model_copy(update={"start": start, "end": end}))
    stream = export(audit.export_rows(request.app.state, where), audit.item_of, AUDIT_COLUMNS, query.format,
                    f"audit-{start:%Y%m%d}-{end:%Y%m%d}")
    return respond(call_of(request, caller), request, stream)


@router.get("/v1/audit-log/{event_id}", **documented(ok=json_ok(Envelope[AuditItem], "the event"),
                                                     errors=(*KEYED, ErrorCode.NOT_FOUND)))
async def audit_event(request: Request, caller: Admin, event_id: str) -> JSONResponse:
    return ok((await audit.event(request.app.state, caller, event_id)).model_dump(mode="json"), request)
