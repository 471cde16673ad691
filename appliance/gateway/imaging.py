"""The image service: one path for /v1/inference/images/generate, /oai/v1/images/generations and batch lines.

The worker always answers with base64 PNGs; for ``response_format: url`` the
gateway stores them in the media store and answers with media URLs instead.
"""

from __future__ import annotations

import asyncio
import binascii
import logging

from sqlalchemy.exc import SQLAlchemyError

from appliance.catalogue import ModelEntry
from appliance.db.keys import ApiKey
from appliance.gateway.body import parse_json
from appliance.gateway.context import Caller
from appliance.gateway.errors import ApiError, ErrorCode, validation_error
from appliance.gateway.media import media_base_url, media_store
from appliance.gateway.metering import reserve
from appliance.gateway.relay import post_json, resolve_model
from appliance.media.store import MediaFull, MediaStore
from appliance.protocol.images import DEFAULT_SIZES, ImageData, ImageGenerationRequest, ImageGenerationResponse, \
    allowed_sizes

log = logging.getLogger("appliance.gateway")

B64_SLICE = 256 * 1024  # a multiple of 4, so only the last slice may carry padding


def choose_size(entry: ModelEntry, asked: str | None, name: str) -> str:
    """The size to generate: the one asked for if the model offers it, else the model's default."""
    sizes = allowed_sizes(entry.engine_options)
    if asked is None:
        return DEFAULT_SIZES[0] if DEFAULT_SIZES[0] in sizes else sizes[0]
    if asked not in sizes:
        raise validation_error("size", f"model '{name}' does not offer size '{asked}'; choose one of "
                                       f"{', '.join(sizes)}")
    return asked


def decode_base64(text: str) -> bytes:
    """Strict base64, decoded in slices: one call on megabytes holds the GIL long enough to stall the event loop."""
    data = text.encode("ascii")
    return b"".join(binascii.a2b_base64(data[start:start + B64_SLICE], strict_mode=True)
                    for start in range(0, len(data), B64_SLICE))


def to_urls(worker_json: bytes, store: MediaStore, base_url: str, slug: str) -> bytes:
    """The worker's base64 answer, with each image stored and replaced by its media URL (runs in a thread)."""
    try:
        answer = ImageGenerationResponse.model_validate_json(worker_json)
        pngs = [decode_base64(item.b64_json or "") for item in answer.data]
        if not answer.data or not all(pngs):
            raise ValueError("no image")
    except (ValueError, binascii.Error):
        raise ApiError(ErrorCode.BACKEND_ERROR, f"The engine of model '{slug}' sent an answer that is not "
                                                "a list of images.") from None
    try:
        stored = store.put_all(pngs, "image/png")
        items = [ImageData(url=base_url + media.token, revised_prompt=item.revised_prompt)
                 for media, item in zip(stored, answer.data, strict=True)]
    except MediaFull as exc:
        raise ApiError(ErrorCode.BACKEND_RATE_LIMITED, f"The image was generated but {exc}; retry after "
                                                       f"{exc.retry_after} s, or ask for response_format b64_json.",
                       retry_after=exc.retry_after) from None
    except (OSError, SQLAlchemyError) as exc:  # a full or failing disk, a locked DB: say so, and what to do
        log.exception("could not store a generated image")
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise ApiError(ErrorCode.BACKEND_ERROR, f"The image was generated but the appliance could not store it "
                                                f"({reason}); ask for response_format b64_json, or retry later.",
                       ) from None
    return ImageGenerationResponse(created=answer.created, data=items).model_dump_json().encode()


async def generate_images(request: Caller, key: ApiKey, raw: bytes) -> bytes:
    """The image service: validate, resolve, reserve, generate; base64 or media URLs, as asked."""
    body = parse_json(raw, ImageGenerationRequest)
    entry = resolve_model(request, key, body.model, "image")
    size = choose_size(entry, body.size, body.model)
    meter = await reserve(request, key, "images", body.n)
    payload = body.model_copy(update={"model": entry.served_model, "size": size, "response_format": "b64_json"})
    answer = await post_json(request, entry, "/images/generations",
                             payload.model_dump_json(exclude_none=True).encode())
    meter.units.images, meter.units.image_size, meter.units.known = body.n, size, True
    if body.response_format == "b64_json":
        return answer
    # Decoding and writing megabytes of PNG off the event loop keeps other requests flowing meanwhile.
    return await asyncio.to_thread(to_urls, answer, media_store(request.app), media_base_url(request), entry.slug)
