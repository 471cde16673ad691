"""The batch and file service both surfaces call: create, read, list and cancel, scoped to the caller's key."""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import tempfile
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.batch.files import DiskNearlyFull, FileStore, OverLimit, OverQuota, utc
from appliance.batch.intake import create_batch
from appliance.batch.store import ACTIVE, BatchStore
from appliance.db.batches import BatchFileRow, BatchRow
from appliance.protocol.batches import BatchErrors, BatchObject, FileObject, RequestCounts
from appliance.serving.audit import audited, event_for
from appliance.serving.context import Call
from appliance.serving.errors import ApiError, ErrorCode, disk_nearly_full, validation_error
from appliance.serving.fetch import check_allowed, fetch_allowed
from appliance.serving.media import media_base_url
from appliance.serving.media_decode import AUDIO_FORMATS, IMAGE_FORMATS, describe, sniff
from appliance.serving.media_sources import MEDIA_PURPOSES
from appliance.serving.runtime import Runtime
from appliance.tenancy.caller import Caller

MAX_BASE64_BYTES = 10 * 1024 * 1024  # the decoded inline input (the hosted docs: "under 10 MB")
MAX_INPUT_BYTES = 200 * 1024 * 1024  # an input file fetched from an allowed URL
FETCH_TIMEOUT_S = 60
FAILED_STATES = ("failed", "expired", "cancelled")
PURPOSES = ("batch", *MEDIA_PURPOSES)  # what /oai/v1/files takes: batch inputs, and images or sounds for chat parts


def stores(runtime: Runtime) -> tuple[BatchStore, FileStore]:
    """The appliance's batch and file stores, on the one state DB, made on first use."""
    found = runtime.batch_stores
    if found is None:
        engine = runtime.keys.engine
        settings = runtime.settings
        found = runtime.batch_stores = (BatchStore(engine),
                                        FileStore(engine, settings.effective_batch_files_dir,
                                                  quota_bytes=settings.files_quota_bytes_per_key))
    return found  # type: ignore[no-any-return]


def scope(caller: Caller) -> str | None:
    """Whose objects a caller sees: its key's; with admin:access, its tenant's (a tenant id), or, for a box admin,
    everyone's (None)."""
    reach = caller.reach("admin:access")
    if reach is None:
        return caller.key.id
    return None if reach == "box" else caller.tenant_id


def not_found(kind: str, object_id: str) -> ApiError:
    return ApiError(ErrorCode.NOT_FOUND, f"No {kind} '{object_id[:80]}' for this API key.")


def _unix(moment: datetime | None) -> int | None:
    return int(utc(moment).timestamp()) if moment is not None else None


def file_object(row: BatchFileRow) -> FileObject:
    return FileObject(id=row.id, bytes=row.bytes, created_at=_unix(row.created_at) or 0, filename=row.filename,
                      purpose=row.purpose)


def batch_object(call: Call, batch: BatchRow) -> BatchObject:
    """The OpenAI batch object, its files' links on the host the caller used (or ``public_base_url``)."""
    media_base = media_base_url(call)
    batch_store, files = stores(call.runtime)
    counts = batch_store.counts(batch.id)
    failed = sum(counts.get(state, 0) for state in FAILED_STATES)
    urls: dict[str, str | None] = {}
    for name, file_id in (("output_file_url", batch.output_file_id), ("error_file_url", batch.error_file_id)):
        row = files.get(file_id, None) if file_id else None
        urls[name] = media_base + row.media_token if row and row.media_token else None
    times = {name: _unix(getattr(batch, name)) for name in (
        "in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at", "cancelling_at",
        "cancelled_at")}
    return BatchObject(
        id=batch.id, endpoint=batch.endpoint,
        errors=BatchErrors.model_validate({"data": batch.errors}) if batch.errors else None,
        input_file_id=batch.input_file_id, completion_window=batch.completion_window,
        status=batch.status,  # type: ignore[arg-type]
        output_file_id=batch.output_file_id, error_file_id=batch.error_file_id, created_at=_unix(batch.created_at) or 0,
        expires_at=_unix(batch.expires_at) or 0,
        request_counts=RequestCounts(total=batch.total, completed=counts.get("done", 0), failed=failed),
        metadata=batch.metadata_, **urls, **times)


async def create(call: Call, surface: str, endpoint: str | None, input_file_id: str, window: str,
                 metadata: dict[str, str] | None) -> BatchRow:
    """Check and index the input file, and store the batch (``failed`` when a line is bad)."""
    batch_store, files = stores(call.runtime)
    key = call.key
    row = await asyncio.to_thread(files.get, input_file_id, key.id)
    if row is None or row.purpose != "batch":
        raise not_found("input file", input_file_id)
    batch = await asyncio.to_thread(create_batch, batch_store.engine, key_id=key.id, surface=surface,
                                    endpoint=endpoint, input_file_id=input_file_id,
                                    input_path=files.path(input_file_id), window=window, metadata=metadata)
    runner = call.runtime.batch_runner
    if runner is not None:
        runner.wake.set()  # its lines start now, not at the runner's next look for work
    return batch


async def upload(call: Call, purpose: object, filename: str | None, source: Any, limit: int) -> BatchFileRow:
    """A file uploaded through /oai/v1/files: a batch's input, or an image or a sound that chat content parts
    name by ``scaigrid://file/{id}`` or ``file_id`` (checked by its first bytes here, decoded in full when used)."""
    if purpose not in PURPOSES:
        given = f"'{str(purpose)[:40]}' is not served here" if purpose else "the form needs a 'purpose'"
        raise validation_error("purpose", f"{given}; this appliance takes files with purpose {', '.join(PURPOSES)}")
    if purpose == "batch":
        return await save_upload(call, filename or "input.jsonl", source, limit)
    kind = sniff(await asyncio.to_thread(_head, source))
    wanted = IMAGE_FORMATS if purpose == "vision" else {**IMAGE_FORMATS, **AUDIO_FORMATS}
    if kind not in wanted:
        taken = "an image (PNG, JPEG, WEBP, GIF)" + (" or a sound (WAV, MP3)" if purpose == "user_data" else "")
        raise validation_error("file", f"is {describe(kind)}; a file of purpose '{purpose}' on this appliance is "
                                       f"{taken}")
    limit = min(limit, call.runtime.settings.max_media_part_bytes)
    return await save_upload(call, filename or "file", source, limit, str(purpose))


def _head(source: Any) -> bytes:
    head = source.read(16)
    source.seek(0)
    return bytes(head)


def content_type(row: BatchFileRow, path: Any) -> str:
    """The media type a file's bytes are served with."""
    if row.purpose not in MEDIA_PURPOSES:
        return "application/jsonl"
    with open(path, "rb") as fh:
        return sniff(fh.read(16)) or "application/octet-stream"


async def save_upload(call: Call, filename: str, source: Any, limit: int, purpose: str = "batch") -> BatchFileRow:
    _, files = stores(call.runtime)
    try:
        return await asyncio.to_thread(files.save, call.key.id, purpose, filename, source, limit)
    except OverLimit:
        raise ApiError(ErrorCode.PAYLOAD_TOO_LARGE, f"The file is larger than the limit of {limit} bytes.") from None
    except OverQuota as exc:
        raise ApiError(ErrorCode.QUOTA_EXCEEDED, f"This API key's stored files would pass its quota of "
                                                 f"{_megabytes(exc.quota)} ({_megabytes(exc.used)} in use); delete "
                                                 "files it no longer needs (DELETE /oai/v1/files/{file_id}).") from None
    except DiskNearlyFull as exc:
        raise disk_nearly_full(exc.free, exc.reserve) from None


def _megabytes(count: int) -> str:
    return f"{count / (1024 * 1024):.1f} MB"


async def input_from_base64(call: Call, text: str) -> BatchFileRow:
    if len(text) > MAX_BASE64_BYTES * 4 // 3 + 4:
        raise ApiError(ErrorCode.PAYLOAD_TOO_LARGE, "input_file_base64 must decode to less than 10 MB; upload "
                                                    "larger files and pass input_file_url 'scaigrid://file/<id>'.")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise validation_error("input_file_base64", "is not valid base64") from None
    return await save_upload(call, "input.jsonl", io.BytesIO(data), MAX_BASE64_BYTES)


async def input_from_url(call: Call, url: str) -> str:
    """The id of the input file ``url`` names: an uploaded file, or a download from an allowed host."""
    if url.startswith("scaigrid://file/"):
        return url.removeprefix("scaigrid://file/")
    settings = call.runtime.settings
    if not url.startswith(("http://", "https://")):
        raise validation_error("input_file_url", "must be scaigrid://file/<file id> or an http(s) URL")
    check_allowed(url, settings.batch_url_allow, "input_file_url", "batch_url_allow")
    _, files = stores(call.runtime)
    with tempfile.TemporaryFile(dir=files.root) as spool:  # on disk, never whole in memory
        await fetch_allowed(url, settings.batch_url_allow, field="input_file_url", setting="batch_url_allow",
                            max_bytes=MAX_INPUT_BYTES, timeout_s=FETCH_TIMEOUT_S,
                            sink=lambda chunk: asyncio.to_thread(spool.write, chunk))
        spool.seek(0)
        name = urlsplit(url).path.rsplit("/", 1)[-1] or "input.jsonl"
        row = await save_upload(call, name, spool, MAX_INPUT_BYTES)
    return row.id


async def delete_file(runtime: Runtime, row: BatchFileRow) -> None:
    """Delete a file that no running batch reads; works on a full disk too (the DB's reserve makes room)."""
    if await asyncio.to_thread(file_in_use, runtime, row.id):
        raise validation_error("file_id", "a batch that is still running reads this file; cancel it first")
    _, files = stores(runtime)
    await asyncio.to_thread(runtime.disk_reserve.with_room, lambda: files.delete([row.id]))


def file_in_use(runtime: Runtime, file_id: str) -> bool:
    """Whether a batch that still runs reads this file."""
    batch_store, _ = stores(runtime)
    with Session(batch_store.engine) as session:
        return session.scalar(select(BatchRow.id).where(BatchRow.input_file_id == file_id,
                                                        BatchRow.status.in_(ACTIVE)).limit(1)) is not None


async def cancel(call: Call, batch_id: str) -> BatchRow:
    """Cancel the batch, audited in the transaction that cancels it."""
    batch_store, _ = stores(call.runtime)
    batch = await asyncio.to_thread(batch_store.get, batch_id, scope(call.caller))
    if batch is None:
        raise not_found("batch", batch_id)
    event = event_for(call, "batch.cancel", "batch", batch_id)

    def work(session: Session) -> None:
        if batch_store.cancel(batch_id, session):
            return
        status = session.scalar(select(BatchRow.status).where(BatchRow.id == batch_id)) or batch.status
        if status not in ("cancelling", "cancelled"):  # refused: nothing is recorded but the failure
            raise validation_error("batch_id", f"the batch is already {status}; only a validating or in_progress "
                                               "batch can be cancelled")

    await audited(call, event, work)
    fresh = await asyncio.to_thread(batch_store.get, batch_id, None)
    assert fresh is not None
    return fresh
