"""Reading a multipart upload with a size limit that holds while the body streams in.

The body is counted chunk by chunk as it arrives: an upload over the limit is
refused with 413 at the first byte past it (or at once, from its
Content-Length), never after the whole of it was buffered. The file part goes
to a spooled temporary file (disk past 1 MiB), not to memory.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

from appliance.media.store import default_min_free_bytes
from appliance.serving.audio import AudioFile
from appliance.serving.errors import ApiError, ErrorCode, disk_nearly_full, validation_error

FORM_OVERHEAD = 64 * 1024  # room for the other form fields and the multipart framing
DISK_CHECK_BYTES = 1024 * 1024  # the free space is looked at after every this many bytes spooled


@dataclass
class Upload:
    form: FormData
    file: UploadFile

    @property
    def audio(self) -> AudioFile:
        return AudioFile(self.file.file, self.file.filename or "audio",
                         self.file.content_type or "application/octet-stream")

    def fields(self) -> dict[str, str | list[str]]:
        """The text fields; a repeated field (``timestamp_granularities[]``) as a list."""
        out: dict[str, str | list[str]] = {}
        for key in {k for k, v in self.form.multi_items() if isinstance(v, str)}:
            values = [v for v in self.form.getlist(key) if isinstance(v, str)]
            out[key] = values if key.endswith("[]") or len(values) > 1 else values[0]
        return out


def too_large(limit: int) -> ApiError:
    megabytes = limit / (1024 * 1024)
    return ApiError(ErrorCode.PAYLOAD_TOO_LARGE, f"The upload is larger than this appliance's limit of "
                                                 f"{megabytes:.0f} MB ({limit} bytes); send a shorter or more "
                                                 "compressed file.")


async def read_upload(request: Request, limit: int, field: str = "file", what: str = "the audio file") -> Upload:
    """The form of a multipart upload whose ``field`` is a non-empty file of at most ``limit`` bytes.

    Called after authentication: a request without a valid key never has its
    body read. The file part is spooled to the temporary directory, which the
    gateway keeps under its state directory (``STATE/tmp``), never ``/tmp``.
    """
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise validation_error("body", f"send {what} as multipart/form-data with a '{field}' field "
                                       f"(got Content-Type '{content_type or 'none'}')")
    body_limit = limit + FORM_OVERHEAD
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > body_limit:
        raise too_large(limit)

    spool_dir = tempfile.gettempdir()
    reserve = default_min_free_bytes(Path(spool_dir))

    async def counted() -> AsyncGenerator[bytes, None]:
        seen = checked = 0
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > body_limit:
                raise too_large(limit)
            if seen - checked >= DISK_CHECK_BYTES:  # the spool must not eat the room the state DB needs
                checked = seen
                free = shutil.disk_usage(spool_dir).free
                if free - DISK_CHECK_BYTES < reserve:
                    raise disk_nearly_full(free, reserve)
            yield chunk

    parser = MultiPartParser(request.headers, counted(), max_files=1, max_fields=32)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise validation_error("body", f"the multipart body cannot be read: {exc.message}") from None
    except ClientDisconnect:
        raise validation_error("file", "the upload ended before it was complete") from None
    upload = form.get(field)
    if not isinstance(upload, UploadFile):
        await form.close()
        raise validation_error(field, f"{what} is required (a multipart field named '{field}')")
    if upload.size is not None and upload.size > limit:
        await form.close()
        raise too_large(limit)
    if not upload.size:
        await form.close()
        raise validation_error(field, "the file is empty")
    return Upload(form, upload)
