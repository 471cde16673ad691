"""/oai/v1/files and /oai/v1/batches: the OpenAI Files and Batches API (plain OpenAI shapes and errors)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import FileResponse, JSONResponse

from appliance.batch import service
from appliance.tenancy.caller import Caller
from appliance.gateway.auth import require
from appliance.gateway.body import parse_body, parse_query
from appliance.gateway.calls import call_of
from appliance.gateway.openapi import KEYED, documented, json_ok, json_request, multipart_request, raw_ok
from appliance.gateway.routing import api_router
from appliance.gateway.uploads import read_upload
from appliance.protocol.batches import BatchObject, FileDeleted, FileObject, FileUploadForm, OpenAIBatchCreate, \
    OpenAIList, OpenAIListQuery
from appliance.serving.errors import ApiError, ErrorCode

router = api_router()

Key = Annotated[Caller, Depends(require("models:use"))]


def _json(model: object) -> JSONResponse:
    """OpenAI's shape: a field that has no value is left out (its schema has no null for most of them)."""
    return JSONResponse(model.model_dump(mode="json", exclude_none=True))  # type: ignore[attr-defined]


def _listing(items: list[object], more: bool, ids_required: bool = False) -> JSONResponse:
    """A page; ``ids_required``: the list's schema requires first_id and last_id as strings (files), even empty."""
    ids = [item.id for item in items]  # type: ignore[attr-defined]
    none = "" if ids_required else None
    return _json(OpenAIList(data=[item.model_dump(mode="json", exclude_none=True)  # type: ignore[attr-defined]
                                  for item in items],
                            first_id=ids[0] if ids else none, last_id=ids[-1] if ids else none, has_more=more))


@router.post("/oai/v1/files", **documented(
    body=multipart_request(FileUploadForm, files=["file"]), ok=json_ok(FileObject, "the stored file"), errors=KEYED,
    openai=True))
async def create_file(request: Request, key: Key) -> JSONResponse:
    limit = request.app.state.settings.max_body_bytes
    upload = await read_upload(request, limit, what="the file")  # the key was checked first: no keyless spooling
    try:
        row = await service.upload(call_of(request, key), upload.fields().get("purpose"), upload.file.filename,
                                   upload.file.file, limit)
    finally:
        await upload.form.close()
    return _json(service.file_object(row))


@router.get("/oai/v1/files", **documented(ok=json_ok(OpenAIList, "the files"), errors=KEYED, openai=True))
async def list_files(request: Request, key: Key) -> JSONResponse:
    query = parse_query(request, OpenAIListQuery)
    _, files = service.stores(request.app.state)
    rows = await asyncio.to_thread(files.list, service.scope(key), query.after, query.limit + 1, query.purpose)
    return _listing([service.file_object(row) for row in rows[:query.limit]], len(rows) > query.limit,
                    ids_required=True)


async def _file(request: Request, key: Caller, file_id: str):  # type: ignore[no-untyped-def]
    _, files = service.stores(request.app.state)
    row = await asyncio.to_thread(files.get, file_id, service.scope(key))
    if row is None:
        raise service.not_found("file", file_id)
    return row


@router.get("/oai/v1/files/{file_id}", **documented(
    ok=json_ok(FileObject, "the file"), errors=(*KEYED, ErrorCode.NOT_FOUND), openai=True))
async def retrieve_file(request: Request, key: Key, file_id: str) -> JSONResponse:
    return _json(service.file_object(await _file(request, key, file_id)))


@router.delete("/oai/v1/files/{file_id}", **documented(
    ok=json_ok(FileDeleted, "the file is deleted"), errors=(*KEYED, ErrorCode.NOT_FOUND), openai=True))
async def delete_file(request: Request, key: Key, file_id: str) -> JSONResponse:
    row = await _file(request, key, file_id)
    await service.delete_file(request.app.state, row)
    return _json(FileDeleted(id=row.id))


@router.get("/oai/v1/files/{file_id}/content", **documented(
    ok=raw_ok(["application/jsonl", "image/png", "image/jpeg", "image/webp", "image/gif", "audio/wav", "audio/mpeg"],
              "the file's bytes"), errors=(*KEYED, ErrorCode.NOT_FOUND), openai=True))
async def file_content(request: Request, key: Key, file_id: str) -> FileResponse:
    row = await _file(request, key, file_id)
    _, files = service.stores(request.app.state)
    path = files.path(row.id)
    if not path.is_file():  # its row outlived its bytes (removed by hand, a restore without the files)
        raise ApiError(ErrorCode.NOT_FOUND, f"The bytes of file '{row.id}' are gone from this appliance; upload it "
                                            "again (its batches' results are in their output files).")
    media_type = await asyncio.to_thread(service.content_type, row, path)
    return FileResponse(path, media_type=media_type, filename=row.filename)


@router.post("/oai/v1/batches", **documented(
    body=json_request(OpenAIBatchCreate), ok=json_ok(BatchObject, "the new batch"),
    errors=(*KEYED, ErrorCode.NOT_FOUND), openai=True))  # an input_file_id that is not the key's
async def create_batch(request: Request, key: Key) -> JSONResponse:
    body = await parse_body(request, OpenAIBatchCreate)
    call = call_of(request, key)
    batch = await service.create(call, "openai", body.endpoint, body.input_file_id, body.completion_window,
                                 body.metadata)
    return _json(await asyncio.to_thread(service.batch_object, call, batch))


@router.get("/oai/v1/batches", **documented(ok=json_ok(OpenAIList, "the batches"), errors=KEYED, openai=True))
async def list_batches(request: Request, key: Key) -> JSONResponse:
    query = parse_query(request, OpenAIListQuery)
    batch_store, _ = service.stores(request.app.state)
    rows = await asyncio.to_thread(batch_store.list, service.scope(key), None, query.after, min(query.limit, 100) + 1)
    call = call_of(request, key)
    page = rows[:min(query.limit, 100)]
    items = [await asyncio.to_thread(service.batch_object, call, row) for row in page]
    return _listing(items, len(rows) > len(page))  # type: ignore[arg-type]


@router.get("/oai/v1/batches/{batch_id}", **documented(
    ok=json_ok(BatchObject, "the batch"), errors=(*KEYED, ErrorCode.NOT_FOUND), openai=True))
async def retrieve_batch(request: Request, key: Key, batch_id: str) -> JSONResponse:
    batch_store, _ = service.stores(request.app.state)
    batch = await asyncio.to_thread(batch_store.get, batch_id, service.scope(key))
    if batch is None:
        raise service.not_found("batch", batch_id)
    return _json(await asyncio.to_thread(service.batch_object, call_of(request, key), batch))


@router.post("/oai/v1/batches/{batch_id}/cancel", **documented(
    ok=json_ok(BatchObject, "the batch, cancelling"), errors=(*KEYED, ErrorCode.NOT_FOUND), openai=True))
async def cancel_batch(request: Request, key: Key, batch_id: str) -> JSONResponse:
    call = call_of(request, key)
    batch = await service.cancel(call, batch_id)
    return _json(await asyncio.to_thread(service.batch_object, call, batch))
