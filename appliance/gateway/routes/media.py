"""GET /v1/media/{token}: the bytes behind a media URL, raw, while its token is valid.

No API key is asked for: the URL is handed to whoever should fetch it (the
hosted docs fetch it with a bare ``httpx.get(url)``), so the unguessable,
expiring token is the credential.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import AsyncIterator
from typing import BinaryIO

from fastapi import Request, Response
from fastapi.responses import StreamingResponse

from appliance.gateway.openapi import ANY_REQUEST, documented, raw_ok
from appliance.gateway.routing import api_router
from appliance.media.store import EXTENSIONS
from appliance.serving.errors import ApiError, ErrorCode

CHUNK = 256 * 1024

router = api_router()


def _not_found() -> ApiError:
    return ApiError(ErrorCode.NOT_FOUND, "No media behind this link: it is unknown or has expired (links last "
                                         "a limited time). Generate the image again, or use response_format "
                                         "b64_json to keep the bytes.")


async def _chunks(fh: BinaryIO) -> AsyncIterator[bytes]:
    try:
        while chunk := await asyncio.to_thread(fh.read, CHUNK):
            yield chunk
    finally:
        fh.close()


@router.get("/v1/media/{token}", response_class=Response, **documented(
    ok=raw_ok(EXTENSIONS, "the stored bytes (an image, a batch file)"), errors=(*ANY_REQUEST, ErrorCode.NOT_FOUND),
    keyed=False))
async def download(request: Request, token: str) -> StreamingResponse:
    store = request.app.state.media
    found = await asyncio.to_thread(store.open, token)
    if found is None:
        raise _not_found()
    try:
        # Opened now: a sweep that unlinks the file later cannot cut this download short.
        fh = await asyncio.to_thread(found.path.open, "rb")
    except FileNotFoundError:
        raise _not_found() from None
    size = os.fstat(fh.fileno()).st_size
    max_age = max(0, math.floor(found.expires_at - store.clock()))
    headers = {"Content-Length": str(size), "Cache-Control": f"private, max-age={max_age}",
               "X-Content-Type-Options": "nosniff"}
    return StreamingResponse(_chunks(fh), media_type=found.content_type, headers=headers)

