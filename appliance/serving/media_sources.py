"""Where a media part's bytes come from, read by the gateway itself: an engine is never handed a URL to fetch.

- a ``data:`` URL (base64; its declared type is checked against the bytes later);
- this appliance's own media URL, ``/v1/media/tok_…`` on a host it answers on
  (or a bare path): read from the media store, never over HTTP;
- ``scaigrid://file/{file_id}``: a file the same key uploaded through
  ``/oai/v1/files`` (purpose ``vision`` or ``user_data``);
- ``http(s)`` only on a host of the ``media_url_allow`` setting (empty by
  default: the box is no relay into the LAN), fetched by serving/fetch.py,
  which refuses a redirect off the list.
"""

from __future__ import annotations

import asyncio
import binascii
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from appliance.media import tokens
from appliance.serving.context import Call
from appliance.serving.errors import ApiError, ErrorCode, validation_error
from appliance.serving.fetch import fetch_allowed
from appliance.serving.media import MEDIA_PATH

FILE_SCHEME = "scaigrid://file/"
MEDIA_PURPOSES = ("vision", "user_data")  # uploads a content part may name
FETCH_TIMEOUT_S = 30
ACCEPTED = ("a data: URL, this appliance's own /v1/media/tok_… URL, scaigrid://file/<file id>, or an http(s) URL "
            "on a host of the media_url_allow setting")


@dataclass(frozen=True)
class Fetched:
    data: bytes
    declared: str | None = None  # the media type a data: URL declares


class UploadedFiles(Protocol):
    """The file store of /oai/v1/files (batch/files.py's FileStore, kept on the runtime by the floor that owns it)."""

    def get(self, file_id: str, key_id: str | None) -> Any: ...

    def path(self, file_id: str) -> Path: ...


def too_large(field: str, what: str, limit: int) -> ApiError:
    message = f"{what} is larger than one media part may be ({limit} bytes: the max_media_part_bytes setting)"
    return ApiError(ErrorCode.PAYLOAD_TOO_LARGE, f"{field}: {message}.", details=[{"field": field, "message": message}])


def decode_base64(text: str, field: str, max_bytes: int) -> bytes:
    """Standard base64 (whitespace tolerated) of at most ``max_bytes``; a 413 before decoding anything larger."""
    if len(text) > (max_bytes + 2) // 3 * 4 + len(text) // 76 * 2 + 4:  # room for line breaks every 76 characters
        raise too_large(field, "the data", max_bytes)
    try:
        data = binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        try:  # base64 wrapped in lines (MIME): without its whitespace
            data = binascii.a2b_base64("".join(text.split()), strict_mode=True)
        except (binascii.Error, ValueError):
            raise validation_error(field, "is not valid base64") from None
    if len(data) > max_bytes:
        raise too_large(field, "the data", max_bytes)
    if not data:
        raise validation_error(field, "is empty")
    return data


def parse_data_url(url: str, field: str, max_bytes: int) -> Fetched:
    """The bytes and declared media type of ``data:<type>;base64,<data>``."""
    header, comma, payload = url[5:].partition(",")
    if not comma:
        raise validation_error(field, "is a data: URL without a ',' before its data")
    params = [item.strip() for item in header.split(";")]
    if "base64" not in (param.lower() for param in params[1:]):
        raise validation_error(field, "is a data: URL that is not base64 (data:<media type>;base64,<data>)")
    return Fetched(decode_base64(payload, field, max_bytes), params[0].lower() or None)


def is_own_media(call: Call, url: str) -> bool:
    """Whether ``url`` is one of this appliance's media URLs: its path, on a host it answers on (or no host)."""
    parts = urlsplit(url)
    if not parts.path.startswith(MEDIA_PATH):
        return False
    if not parts.scheme and not parts.netloc:
        return True
    if parts.scheme not in ("http", "https"):
        return False
    ours = {urlsplit(call.base_url).netloc.lower()}
    public = call.runtime.settings.public_base_url
    if public:
        ours.add(urlsplit(public).netloc.lower())
    return parts.netloc.lower() in ours


async def read_own_media(call: Call, url: str, field: str, max_bytes: int) -> Fetched:
    token = urlsplit(url).path[len(MEDIA_PATH):]
    store = call.runtime.media
    found = await asyncio.to_thread(store.open, token) if tokens.is_well_formed(token) else None
    if found is None:
        ttl = call.runtime.settings.media_ttl_s
        raise validation_error(field, f"names a media token that is unknown or has expired (this appliance's media "
                                      f"URLs live {ttl} s); make the image again or send it as a data: URL")
    if found.size > max_bytes:
        raise too_large(field, f"the image ({found.size} bytes)", max_bytes)
    return Fetched(await asyncio.to_thread(found.path.read_bytes), found.content_type)


async def read_uploaded(call: Call, file_id: str, field: str, max_bytes: int) -> Fetched:
    """A file this key uploaded for use in content parts; another key's, or a batch file, is not found."""
    stores = call.runtime.batch_stores
    files: UploadedFiles | None = stores[1] if stores else None
    row = await asyncio.to_thread(files.get, file_id, call.key.id) if files is not None else None
    if row is None:
        raise validation_error(field, f"no file '{file_id[:80]}' was uploaded with this API key "
                                      "(POST /oai/v1/files, purpose 'vision' or 'user_data')")
    if row.purpose not in MEDIA_PURPOSES:
        raise validation_error(field, f"file '{file_id[:80]}' was uploaded with purpose '{row.purpose}'; a content "
                                      "part takes files of purpose 'vision' or 'user_data'")
    if row.bytes > max_bytes:
        raise too_large(field, f"the file ({row.bytes} bytes)", max_bytes)
    assert files is not None
    try:
        data = await asyncio.to_thread(files.path(file_id).read_bytes)
    except FileNotFoundError:
        raise validation_error(field, f"the bytes of file '{file_id[:80]}' are gone from this appliance; upload it "
                                      "again") from None
    return Fetched(data)


async def read_url(call: Call, url: str, field: str, max_bytes: int) -> Fetched:
    """The bytes an image part's ``url`` names, from wherever this appliance may read them."""
    if url.startswith("data:"):
        return parse_data_url(url, field, max_bytes)
    if url.startswith(FILE_SCHEME):
        return await read_uploaded(call, url[len(FILE_SCHEME):], field, max_bytes)
    if is_own_media(call, url):
        return await read_own_media(call, url, field, max_bytes)
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise validation_error(field, f"must be {ACCEPTED}")
    allow = call.runtime.settings.media_url_allow
    received = bytearray()

    async def keep(chunk: bytes) -> None:
        received.extend(chunk)

    try:
        await fetch_allowed(url, allow, field=field, setting="media_url_allow", max_bytes=max_bytes,
                            timeout_s=FETCH_TIMEOUT_S, sink=keep)
    except ApiError as exc:
        if exc.code is ErrorCode.PAYLOAD_TOO_LARGE:
            raise too_large(field, "what the URL serves", max_bytes) from None
        raise
    return Fetched(bytes(received))
