"""POST /v1/inference/images/generate (enveloped) and POST /oai/v1/images/generations (plain OpenAI).

The service, shared with the batch runner, is serving/images.py.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Response

from appliance.tenancy.caller import Caller
from appliance.gateway.auth import require
from appliance.gateway.body import parse_body
from appliance.gateway.calls import call_of, respond
from appliance.gateway.openapi import INFERENCE, Envelope, documented, json_ok, json_request
from appliance.gateway.routing import api_router
from appliance.protocol.images import ImageGenerationRequest, ImageGenerationResponse
from appliance.serving.images import generate_images

router = api_router(metered=True)

Key = Annotated[Caller, Depends(require("models:use"))]


async def _generate(request: Request, key: Caller) -> Response:
    call = call_of(request, key)
    return respond(call, request, await generate_images(call, await parse_body(request, ImageGenerationRequest)))


@router.post("/v1/inference/images/generate", **documented(
    body=json_request(ImageGenerationRequest), ok=json_ok(Envelope[ImageGenerationResponse], "the images"),
    errors=INFERENCE))
async def generate(request: Request, key: Key) -> Response:
    return await _generate(request, key)


@router.post("/oai/v1/images/generations", **documented(
    body=json_request(ImageGenerationRequest), ok=json_ok(ImageGenerationResponse, "the images"),
    errors=INFERENCE, openai=True))
async def openai_generations(request: Request, key: Key) -> Response:
    return await _generate(request, key)
