"""The diffusers worker: OpenAI's /v1/images/generations on a StableDiffusionXLPipeline.

One generation runs at a time (a GPU runs one SDXL batch at full speed; two
would only share it and double the memory), and at most ``max_queue`` more
wait; beyond that the worker answers 429, which the gateway passes on as
BACKEND_RATE_LIMITED with a retry hint. PNG encoding runs off the generation thread,
so the next generation starts while the last one's images are compressed.

engine_options: ``sizes`` (allowed WIDTHxHEIGHT), ``steps`` ({standard, hd}),
``guidance`` ({vivid, natural}), ``max_queue``, ``max_batch`` (images per
pipeline call), ``blocked_terms`` (a simple safety filter), ``device``,
``threads``, ``png_compress_level``, ``variant``.

The worker always answers ``b64_json``; the gateway turns images into media
URLs when the client asked for ``url`` (the worker knows no media store).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import logging
import re
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import Request, Response

from appliance.catalogue import ModelEntry
from appliance.protocol.images import ImageData, ImageGenerationRequest, ImageGenerationResponse, allowed_sizes
from appliance.workers.server import WorkerError, create_worker_app, worker_main

log = logging.getLogger("appliance.worker.images")

DEFAULT_STEPS = {"standard": 30, "hd": 50}  # diffusers' SDXL default is 50; 30 is the usual fast setting
DEFAULT_GUIDANCE = {"vivid": 7.5, "natural": 5.0}  # stronger guidance: more saturated, closer to the prompt
DEFAULT_MAX_QUEUE = 8
DEFAULT_MAX_BATCH = 4
# zlib level 1: on a smooth 1024x1024 test image ~4x faster than Pillow's default 6, for ~15 % more bytes.
DEFAULT_PNG_COMPRESS_LEVEL = 1


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


def build_app(entry: ModelEntry) -> Any:
    import torch
    from diffusers import StableDiffusionXLPipeline
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()  # progress bars would fill the appliance's log
    transformers_logging.disable_progress_bar()

    options = entry.engine_options
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
        encoded = await asyncio.gather(*(loop.run_in_executor(encoder, encode_png, image, compress_level)
                                         for image in images))
        body = ImageGenerationResponse(created=int(time.time()),
                                       data=[ImageData(b64_json=b64, revised_prompt=req.prompt) for b64 in encoded])
        return Response(body.model_dump_json(), media_type="application/json")

    return app


if __name__ == "__main__":
    worker_main(build_app)
