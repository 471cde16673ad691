"""The image service: one path for /v1/inference/images/generate, /oai/v1/images/generations and batch lines.

``response_format: b64_json``: the backend's base64 answer goes to the client
as it is. ``url``: a local worker writes the PNGs into the media directory and
names the files, which the store registers without reading them; a remote
backend (OpenAI-compatible) answers base64, which is decoded and stored here.
"""

from __future__ import annotations

import asyncio
import binascii
import logging

from sqlalchemy.exc import SQLAlchemyError

from appliance.catalogue import ModelEntry
from appliance.engines.registry import engine_spec
from appliance.media.store import MediaFull, MediaStore, StoredMedia
from appliance.protocol.images import DEFAULT_SIZES, ImageData, ImageGenerationRequest, ImageGenerationResponse, \
    WorkerImagesResponse, allowed_sizes
from appliance.serving.context import Call, Surface
from appliance.serving.errors import ApiError, ErrorCode, validation_error
from appliance.serving.media import media_base_url
from appliance.serving.metering import reserve
from appliance.serving.models import resolve_model
from appliance.serving.relay import post_json

log = logging.getLogger("appliance.serving.images")

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


def not_images(slug: str) -> ApiError:
    return ApiError(ErrorCode.BACKEND_ERROR, f"The engine of model '{slug}' sent an answer that is not "
                                             "a list of images.")


def store_answer(answer: WorkerImagesResponse, store: MediaStore, slug: str) -> list[StoredMedia]:
    """Register the files a local worker wrote, or decode and store the base64 images of any other backend."""
    if answer.files:
        try:
            return store.adopt([item.file for item in answer.files], "image/png")
        except (ValueError, FileNotFoundError):  # not a finished hand-over file of the media directory
            raise not_images(slug) from None
    try:
        pngs = [decode_base64(item.b64_json or "") for item in answer.data]
    except (ValueError, binascii.Error):
        raise not_images(slug) from None
    if not pngs or not all(pngs):
        raise not_images(slug)
    return store.put_all(pngs, "image/png")


def to_urls(worker_json: bytes, store: MediaStore, base_url: str, slug: str, with_nulls: bool = False) -> bytes:
    """The backend's answer, with each image stored (or registered) and named by its media URL (runs in a thread);
    ``with_nulls``: ``"b64_json": null`` beside each URL, as ScaiGrid's answers show it."""
    try:
        answer = WorkerImagesResponse.model_validate_json(worker_json)
    except ValueError:
        raise not_images(slug) from None
    prompts = [item.revised_prompt for item in answer.files or answer.data]
    try:
        stored = store_answer(answer, store, slug)
        items = [ImageData(url=base_url + media.token, revised_prompt=prompt)
                 for media, prompt in zip(stored, prompts, strict=True)]
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
    return ImageGenerationResponse(created=answer.created, data=items).model_dump_json(
        exclude_none=not with_nulls).encode()


async def generate_images(call: Call, body: ImageGenerationRequest) -> bytes:
    """The image service: resolve, reserve, generate; base64 or media URLs, as asked."""
    entry = resolve_model(call, body.model, "image")
    size = choose_size(entry, body.size, body.model)
    meter = await reserve(call, "images", body.n, entry)
    # A local worker writes url-mode images into the media directory itself; a remote one sends base64.
    wire_format = "url" if body.response_format == "url" and engine_spec(entry.engine).local else "b64_json"
    payload = body.model_copy(update={"model": entry.served_model, "size": size, "response_format": wire_format})
    answer = await post_json(call, entry, "/images/generations",
                             payload.model_dump_json(exclude_none=True).encode())
    meter.units.images, meter.units.image_size, meter.units.known = body.n, size, True
    scaigrid = call.surface is Surface.SCAIGRID
    if body.response_format == "b64_json":
        # OpenAI leaves the unused field out (the worker's shape); ScaiGrid's answers show it null.
        return answer.replace(b'{"b64_json":', b'{"url":null,"b64_json":') if scaigrid else answer
    # Off the event loop: a DB commit and fsyncs (and, for a remote backend, decoding megabytes of base64).
    return await asyncio.to_thread(to_urls, answer, call.runtime.media, media_base_url(call), entry.slug, scaigrid)
