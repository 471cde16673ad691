"""POST /v1/inference/embed (enveloped) and POST /oai/v1/embeddings (plain OpenAI); the service is gateway/embedding.py."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Response

from appliance.db.keys import ApiKey
from appliance.gateway.routing import api_router
from appliance.gateway.auth import require
from appliance.gateway.body import json_body
from appliance.gateway.embedding import embed as embed_service
from appliance.gateway.errors import ok_raw
from appliance.gateway.openapi import INFERENCE, Envelope, documented, json_ok, json_request
from appliance.protocol.embeddings import EmbeddingRequest, EmbeddingResponse

router = api_router()

Key = Annotated[ApiKey, Depends(require("models:use"))]


@router.post("/v1/inference/embed", **documented(
    body=json_request(EmbeddingRequest), ok=json_ok(Envelope[EmbeddingResponse], "the embeddings"), errors=INFERENCE))
async def embed(request: Request, key: Key) -> Response:
    return ok_raw(await embed_service(request, key, await json_body(request)), request)


@router.post("/oai/v1/embeddings", **documented(
    body=json_request(EmbeddingRequest), ok=json_ok(EmbeddingResponse, "the embeddings"), errors=INFERENCE,
    openai=True))
async def openai_embeddings(request: Request, key: Key) -> Response:
    return Response(await embed_service(request, key, await json_body(request)), media_type="application/json")
