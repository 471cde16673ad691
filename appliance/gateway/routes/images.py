"""POST /v1/inference/images/generate (enveloped) and POST /oai/v1/images/generations (plain OpenAI).

The service, shared with the batch runner, is gateway/imaging.py.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Response

from appliance.db.keys import ApiKey
from appliance.gateway.routing import api_router
from appliance.gateway.auth import require
from appliance.gateway.body import json_body
from appliance.gateway.errors import ok_raw
from appliance.gateway.imaging import decode_base64, generate_images, to_urls
from appliance.gateway.openapi import INFERENCE, Envelope, documented, json_ok, json_request
from appliance.protocol.images import ImageGenerationRequest, ImageGenerationResponse

__all__ = ["decode_base64", "to_urls", "router"]  # the helpers live in gateway/imaging.py

router = api_router()

Key = Annotated[ApiKey, Depends(require("models:use"))]


@router.post("/v1/inference/images/generate", **documented(
    body=json_request(ImageGenerationRequest), ok=json_ok(Envelope[ImageGenerationResponse], "the images"),
    errors=INFERENCE))
async def generate(request: Request, key: Key) -> Response:
    return ok_raw(await generate_images(request, key, await json_body(request)), request)


@router.post("/oai/v1/images/generations", **documented(
    body=json_request(ImageGenerationRequest), ok=json_ok(ImageGenerationResponse, "the images"),
    errors=INFERENCE, openai=True))
async def openai_generations(request: Request, key: Key) -> Response:
    return Response(await generate_images(request, key, await json_body(request)), media_type="application/json")
