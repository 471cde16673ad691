"""/v1/inference/batch: create, list, show and cancel batches (ScaiGrid, enveloped); the service is batch/service.py."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import JSONResponse

from appliance.batch import service
from appliance.tenancy.caller import Caller
from appliance.gateway.auth import require
from appliance.gateway.body import parse_body, parse_query
from appliance.gateway.calls import call_of
from appliance.gateway.errors import ok
from appliance.gateway.openapi import KEYED, Envelope, documented, json_ok, json_request
from appliance.gateway.routing import api_router
from appliance.protocol.batches import BatchListQuery, BatchObject, BatchPage, ScaigridBatchCreate
from appliance.serving.errors import ErrorCode

router = api_router()

Key = Annotated[Caller, Depends(require("models:use"))]


@router.post("/v1/inference/batch", **documented(
    body=json_request(ScaigridBatchCreate), ok=json_ok(Envelope[BatchObject], "the new batch"),
    errors=(*KEYED, ErrorCode.NOT_FOUND)))  # an input file id that is not the key's
async def create_batch(request: Request, key: Key) -> JSONResponse:
    body = await parse_body(request, ScaigridBatchCreate)
    call = call_of(request, key)
    if body.input_file_base64 is not None:
        file_id = (await service.input_from_base64(call, body.input_file_base64)).id
    else:
        assert body.input_file_url is not None
        file_id = await service.input_from_url(call, body.input_file_url)
    batch = await service.create(call, "scaigrid", None, file_id, body.endpoint_completion_window, body.metadata)
    view = await asyncio.to_thread(service.batch_object, call, batch)
    return ok(view.model_dump(mode="json"), request)


@router.get("/v1/inference/batch", **documented(ok=json_ok(Envelope[BatchPage], "the batches"), errors=KEYED))
async def list_batches(request: Request, key: Key) -> JSONResponse:
    query = parse_query(request, BatchListQuery)
    call = call_of(request, key)
    batch_store, _ = service.stores(call.runtime)
    rows = await asyncio.to_thread(batch_store.list, service.scope(key), query.status, query.cursor, query.limit + 1)
    page, more = rows[:query.limit], len(rows) > query.limit
    items = [await asyncio.to_thread(service.batch_object, call, row) for row in page]
    result = BatchPage(items=items, cursor=page[-1].id if more else None)
    return ok(result.model_dump(mode="json"), request)


@router.get("/v1/inference/batch/{batch_id}", **documented(
    ok=json_ok(Envelope[BatchObject], "the batch"), errors=(*KEYED, ErrorCode.NOT_FOUND)))
async def get_batch(request: Request, key: Key, batch_id: str) -> JSONResponse:
    call = call_of(request, key)
    batch_store, _ = service.stores(call.runtime)
    batch = await asyncio.to_thread(batch_store.get, batch_id, service.scope(key))
    if batch is None:
        raise service.not_found("batch", batch_id)
    view = await asyncio.to_thread(service.batch_object, call, batch)
    return ok(view.model_dump(mode="json"), request)


@router.post("/v1/inference/batch/{batch_id}/cancel", **documented(
    ok=json_ok(Envelope[BatchObject], "the batch, cancelling"), errors=(*KEYED, ErrorCode.NOT_FOUND)))
async def cancel_batch(request: Request, key: Key, batch_id: str) -> JSONResponse:
    call = call_of(request, key)
    batch = await service.cancel(call, batch_id)
    view = await asyncio.to_thread(service.batch_object, call, batch)
    return ok(view.model_dump(mode="json"), request)
