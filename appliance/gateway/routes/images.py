"""POST /v1/inference/images/generate (enveloped) and POST /oai/v1/images/generations (plain OpenAI)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from appliance.db.keys import ApiKey
from appliance.gateway.auth import require
from appliance.gateway.errors import ok_raw
from appliance.gateway.imaging import decode_base64, generate_images, to_urls

__all__ = ["decode_base64", "to_urls", "router"]  # the helpers live in gateway/imaging.py

router = APIRouter()

Key = Annotated[ApiKey, Depends(require("models:use"))]


@router.post("/v1/inference/images/generate")
async def generate(request: Request, key: Key) -> Response:
    return ok_raw(await generate_images(request, key, await request.body()), request)


@router.post("/oai/v1/images/generations")
async def openai_generations(request: Request, key: Key) -> Response:
    return Response(await generate_images(request, key, await request.body()), media_type="application/json")

