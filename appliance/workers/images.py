"""The diffusers worker: OpenAI's /v1/images/generations on a StableDiffusionXLPipeline.

One generation runs at a time (a GPU runs one SDXL batch at full speed; two
would only share it and double the memory), and at most ``max_queue`` more
wait; beyond that the worker answers 429, which the gateway passes on as
BACKEND_RATE_LIMITED with a retry hint. PNG encoding runs off the generation thread,
so the next generation starts while the last one's images are compressed; at
most ``ENCODING_AHEAD`` requests are encoding at once (past that the generation
holds its turn until one finishes, so the queue, and its 429, stay the bound).

engine_options: ``sizes`` (allowed WIDTHxHEIGHT), ``steps`` ({standard, hd}),
``guidance`` ({vivid, natural}), ``max_queue``, ``max_batch`` (images per
pipeline call), ``blocked_terms`` (a simple safety filter), ``device``,
``threads``, ``cpus`` (CPU cores the worker may run on, e.g. ``[1]``: keeps a
CPU box's other cores for the gateway and the other workers), ``nice`` (0–19: a
lower CPU priority, so the gateway and other workers go first on shared cores),
``png_compress_level``, ``variant``.

``response_format: b64_json`` gets base64 PNGs (OpenAI's shape, passed through
by the gateway untouched). ``url`` with a media directory (``MEDIA_DIR_ENV``, set by
the supervisor) gets each PNG encoded straight into a file there, written whole
under a hand-over name, and an answer naming the files; the gateway registers
them in the media store without reading them. Without a media directory ``url``
gets base64 too.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import logging
import os
import re
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fastapi import Request, Response

from appliance.catalogue import ModelEntry
from appliance.media.files import MEDIA_DIR_ENV, handover_name, write_atomically
from appliance.state_dir import make_private_dir
from appliance.protocol.images import ImageData, ImageFile, ImageGenerationRequest, ImageGenerationResponse, \
    WorkerImagesResponse, allowed_sizes
from appliance.workers.server import WorkerError, create_worker_app, worker_main

log = logging.getLogger("appliance.worker.images")

DEFAULT_STEPS = {"standard": 30, "hd": 50}  # diffusers' SDXL default is 50; 30 is the usual fast setting
DEFAULT_GUIDANCE = {"vivid": 7.5, "natural": 5.0}  # stronger guidance: more saturated, closer to the prompt
DEFAULT_MAX_QUEUE = 8
DEFAULT_MAX_BATCH = 4
# zlib level 1: on a smooth 1024x1024 test image ~4x faster than Pillow's default 6, for ~15 % more bytes.
DEFAULT_PNG_COMPRESS_LEVEL = 1
# Requests whose images are being encoded while the next generation runs: enough to overlap, bounded in memory.
ENCODING_AHEAD = 2


class GenerationQueue:
    """One generation at a time, at most ``max_waiting`` more in line; the rest are refused at once."""

    def __init__(self, max_waiting: int) -> None:
        self.max_waiting = max_waiting
        self.pending = 0  # running + waiting
        self._turn = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        if self.pending > self.max_waiting:
            raise WorkerError(429, f"The image model is busy: one generation is running and {self.pending - 1} "
                                   "are waiting, the most it queues. Retry in a few seconds.",
                              error_type="rate_limit_error")
        self.pending += 1
        try:
            async with self._turn:
                yield
        finally:
            self.pending -= 1


def option_map(options: dict[str, Any], name: str, defaults: dict[str, Any]) -> dict[str, Any]:
    given = options.get(name) or {}
    if not isinstance(given, dict):
        raise ValueError(f"engine_options.{name} must be a table like {defaults}")
    return {**defaults, **given}


def blocked_term(prompt: str, terms: list[str]) -> str | None:
    """The first configured term the prompt contains as a whole word (case-insensitive), or None."""
    for term in terms:
        if re.search(rf"(?<!\w){re.escape(term)}(?!\w)", prompt, re.IGNORECASE):
            return term
    return None


def encode_png(image: Any, compress_level: int) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=compress_level)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def write_png(image: Any, compress_level: int, media_dir: Path, prompt: str) -> ImageFile:
    """Encode ``image`` straight into a new file of the media directory, complete before its name exists."""
    name = handover_name()
    size = write_atomically(media_dir / name, lambda fh: image.save(fh, format="PNG", compress_level=compress_level))
    return ImageFile(file=name, size=size, revised_prompt=prompt)


def pin_to_cpus(options: dict[str, Any]) -> None:
    """``engine_options.cpus``: run on those cores only (and, unless ``threads`` says otherwise, one thread each)."""
    cpus = options.get("cpus")
    if not cpus:
        return
    if not isinstance(cpus, list) or not all(isinstance(cpu, int) and cpu >= 0 for cpu in cpus):
        raise ValueError(f"engine_options.cpus must be a list of core numbers like [1], not {cpus!r}")
    os.sched_setaffinity(0, cpus)
    options.setdefault("threads", len(cpus))


def lower_priority(options: dict[str, Any]) -> None:
    """``engine_options.nice``: generate at a lower CPU priority, so live requests of others go first on a CPU box."""
    nice = options.get("nice")
    if nice:
        os.nice(int(nice))  # threads started later (torch's, the PNG encoders) inherit it


def media_dir_from_env() -> Path | None:
    value = os.environ.get(MEDIA_DIR_ENV)
    return Path(value) if value else None


def build_app(entry: ModelEntry) -> Any:
    import torch
    from diffusers import StableDiffusionXLPipeline
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()  # progress bars would fill the appliance's log
    transformers_logging.disable_progress_bar()

    options = dict(entry.engine_options)
    pin_to_cpus(options)  # before torch starts its thread pools, so they inherit the affinity
    lower_priority(options)
    if options.get("threads"):
        torch.set_num_threads(int(options["threads"]))
    device = options.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.float16 if str(device).startswith("cuda") else torch.float32
    # variant: e.g. "fp16" for a checkpoint saved only as diffusion_pytorch_model.fp16.safetensors.
    pipe = StableDiffusionXLPipeline.from_pretrained(str(entry.path), dtype=dtype, local_files_only=True,
                                                     variant=options.get("variant"))
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    scale = pipe.vae_scale_factor
    sizes = allowed_sizes(options)
    for size in sizes:
        width, _, height = size.partition("x")
        if not (width.isdigit() and height.isdigit()) or int(width) % scale or int(height) % scale:
            raise ValueError(f"engine_options.sizes: '{size}' is not WIDTHxHEIGHT in multiples of {scale}")
    steps = option_map(options, "steps", DEFAULT_STEPS)
    guidance = option_map(options, "guidance", DEFAULT_GUIDANCE)
    max_batch = int(options.get("max_batch", DEFAULT_MAX_BATCH))
    blocked = [str(term) for term in options.get("blocked_terms", [])]
    compress_level = int(options.get("png_compress_level", DEFAULT_PNG_COMPRESS_LEVEL))
    queue = GenerationQueue(int(options.get("max_queue", DEFAULT_MAX_QUEUE)))
    engine = ThreadPoolExecutor(max_workers=1, thread_name_prefix="generate")
    encoder = ThreadPoolExecutor(max_workers=2, thread_name_prefix="png")
    encoding = asyncio.Semaphore(ENCODING_AHEAD)
    media_dir = media_dir_from_env()
    if media_dir is not None:
        make_private_dir(media_dir)  # the gateway's store makes it too, on its first use

    async def encode(req: ImageGenerationRequest, images: list[Any]) -> str:
        loop = asyncio.get_running_loop()
        created = int(time.time())
        if req.response_format == "url" and media_dir is not None:
            written = await asyncio.gather(*(loop.run_in_executor(encoder, write_png, image, compress_level,
                                                                  media_dir, req.prompt) for image in images),
                                           return_exceptions=True)
            files = [item for item in written if isinstance(item, ImageFile)]
            failed = [item for item in written if isinstance(item, BaseException)]
            if failed:  # all or none: the files already written would only wait for the orphan sweep
                for item in files:
                    (media_dir / item.file).unlink(missing_ok=True)
                raise failed[0]
            answer = WorkerImagesResponse(created=created, files=files)
            return answer.model_dump_json(include={"created", "files"})
        encoded = await asyncio.gather(*(loop.run_in_executor(encoder, encode_png, image, compress_level)
                                         for image in images))
        # OpenAI's shape exactly (no "url": null): the gateway hands it to b64_json clients as it is.
        return ImageGenerationResponse(created=created, data=[ImageData(b64_json=b64, revised_prompt=req.prompt)
                                                              for b64 in encoded]).model_dump_json(exclude_none=True)

    def generate(req: ImageGenerationRequest) -> list[Any]:
        width, height = req.width_height
        images: list[Any] = []
        with torch.inference_mode():
            while len(images) < req.n:
                count = min(max_batch, req.n - len(images))
                out = pipe(prompt=req.prompt, width=width, height=height, num_images_per_prompt=count,
                           num_inference_steps=int(steps[req.quality]), guidance_scale=float(guidance[req.style]))
                images.extend(out.images)
        return images

    app = create_worker_app(entry)

    @app.post("/v1/images/generations")
    async def generations(request: Request) -> Response:
        req = ImageGenerationRequest.model_validate_json(await request.body())
        size = f"{req.width_height[0]}x{req.width_height[1]}"
        if size not in sizes:
            raise WorkerError(400, f"size '{size}' is not offered by this model; choose one of {', '.join(sizes)}.",
                              "size")
        term = blocked_term(req.prompt, blocked)
        if term is not None:
            # A refusal of the engine's, not a malformed request: the contract calls it BACKEND_ERROR.
            raise WorkerError(500, f"the safety filter rejected the prompt (it contains the blocked term "
                                   f"'{term}').", "prompt", error_type="content_policy_violation")
        loop = asyncio.get_running_loop()
        async with queue.turn():
            started = time.perf_counter()
            log.info("generating %d image(s) of %s, %s quality (request %s)", req.n, size, req.quality,
                     request.headers.get("x-request-id", "-"))
            try:
                images = await loop.run_in_executor(engine, generate, req)
            except Exception as exc:
                log.exception("generation failed")
                if str(device).startswith("cuda"):
                    torch.cuda.empty_cache()  # after an out-of-memory error the next, smaller request can fit
                raise WorkerError(500, f"image generation failed: {type(exc).__name__}: {exc}",
                                  error_type="server_error") from None
            log.info("generated %d image(s) in %.2f s", len(images), time.perf_counter() - started)
            await encoding.acquire()  # the turn passes on only when there is room to encode
        try:
            body = await encode(req, images)
        except OSError as exc:  # a full or failing disk under the media directory
            log.exception("could not write the generated images")
            raise WorkerError(500, f"the images were generated but could not be written to the media directory "
                                   f"({exc.strerror or type(exc).__name__}); ask for response_format b64_json, "
                                   "or retry later", error_type="server_error") from None
        finally:
            encoding.release()
        return Response(body, media_type="application/json")

    return app


if __name__ == "__main__":
    worker_main(build_app)
