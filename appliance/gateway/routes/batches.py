"""/v1/inference/batch: create, list, show and cancel batches (ScaiGrid, enveloped); the runner's lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, TypeVar

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from appliance.batch import service
from appliance.batch.runner import BatchRunner
from appliance.db.keys import ApiKey
from appliance.gateway.routing import api_router
from appliance.gateway.auth import require
from appliance.gateway.body import parse_body
from appliance.gateway.openapi import KEYED, Envelope, documented, json_ok, json_request
from appliance.gateway.errors import ErrorCode, from_validation_error, ok
from appliance.gateway.media import media_base_url
from appliance.protocol.batches import BatchListQuery, BatchObject, BatchPage, ScaigridBatchCreate

Q = TypeVar("Q", bound=BaseModel)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The batch runner runs while the gateway does (and stops before the workers do)."""
    runner = BatchRunner(app, *service.stores(app))
    app.state.batch_runner = runner
    task = asyncio.get_running_loop().create_task(runner.run(), name="batch runner")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


router = api_router(lifespan=lifespan)

Key = Annotated[ApiKey, Depends(require("models:use"))]


def parse_query(request: Request, model: type[Q]) -> Q:
    try:
        return model.model_validate(dict(request.query_params))
    except ValidationError as exc:
        raise from_validation_error(exc) from None


@router.post("/v1/inference/batch", **documented(
    body=json_request(ScaigridBatchCreate), ok=json_ok(Envelope[BatchObject], "the new batch"),
    errors=(*KEYED, ErrorCode.NOT_FOUND)))  # an input file id that is not the key's
async def create_batch(request: Request, key: Key) -> JSONResponse:
    body = await parse_body(request, ScaigridBatchCreate)
    if body.input_file_base64 is not None:
        file_id = (await service.input_from_base64(request.app, key, body.input_file_base64)).id
    else:
        assert body.input_file_url is not None
        file_id = await service.input_from_url(request.app, key, body.input_file_url)
    batch = await service.create(request.app, key, "scaigrid", None, file_id, body.endpoint_completion_window,
                                 body.metadata)
    view = await asyncio.to_thread(service.batch_object, request.app, batch, media_base_url(request))
    return ok(view.model_dump(mode="json"), request)


@router.get("/v1/inference/batch", **documented(ok=json_ok(Envelope[BatchPage], "the batches"), errors=KEYED))
async def list_batches(request: Request, key: Key) -> JSONResponse:
    query = parse_query(request, BatchListQuery)
    batch_store, _ = service.stores(request.app)
    rows = await asyncio.to_thread(batch_store.list, service.scope(key), query.status, query.cursor, query.limit + 1)
    page, more = rows[:query.limit], len(rows) > query.limit
    base = media_base_url(request)
    items = [await asyncio.to_thread(service.batch_object, request.app, row, base) for row in page]
    result = BatchPage(items=items, cursor=page[-1].id if more else None)
    return ok(result.model_dump(mode="json"), request)


@router.get("/v1/inference/batch/{batch_id}", **documented(
    ok=json_ok(Envelope[BatchObject], "the batch"), errors=(*KEYED, ErrorCode.NOT_FOUND)))
async def get_batch(request: Request, key: Key, batch_id: str) -> JSONResponse:
    batch_store, _ = service.stores(request.app)
    batch = await asyncio.to_thread(batch_store.get, batch_id, service.scope(key))
    if batch is None:
        raise service.not_found("batch", batch_id)
    view = await asyncio.to_thread(service.batch_object, request.app, batch, media_base_url(request))
    return ok(view.model_dump(mode="json"), request)


@router.post("/v1/inference/batch/{batch_id}/cancel", **documented(
    ok=json_ok(Envelope[BatchObject], "the batch, cancelling"), errors=(*KEYED, ErrorCode.NOT_FOUND)))
async def cancel_batch(request: Request, key: Key, batch_id: str) -> JSONResponse:
    batch = await service.cancel(request.app, key, batch_id)
    view = await asyncio.to_thread(service.batch_object, request.app, batch, media_base_url(request))
    return ok(view.model_dump(mode="json"), request)
