"""POST /v1/inference/embed (enveloped) and POST /oai/v1/embeddings (plain OpenAI)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from appliance.db.keys import ApiKey
from appliance.gateway.auth import require
from appliance.gateway.embedding import embed as embed_service
from appliance.gateway.errors import ok_raw

router = APIRouter()

Key = Annotated[ApiKey, Depends(require("models:use"))]


@router.post("/v1/inference/embed")
async def embed(request: Request, key: Key) -> Response:
    return ok_raw(await embed_service(request, key, await request.body()), request)


@router.post("/oai/v1/embeddings")
async def openai_embeddings(request: Request, key: Key) -> Response:
    return Response(await embed_service(request, key, await request.body()), media_type="application/json")
