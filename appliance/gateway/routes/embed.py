"""POST /v1/inference/embed (enveloped) and POST /oai/v1/embeddings (plain OpenAI); the service is serving/embed.py."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Response

from appliance.tenancy.caller import Caller
from appliance.gateway.auth import require
from appliance.gateway.body import parse_body
from appliance.gateway.calls import call_of, respond
from appliance.gateway.openapi import INFERENCE, Envelope, documented, json_ok, json_request
from appliance.gateway.routing import api_router
from appliance.protocol.embeddings import EmbeddingRequest, EmbeddingResponse
from appliance.serving.embed import embed as embed_service

router = api_router(metered=True)

Key = Annotated[Caller, Depends(require("models:use"))]


async def _embed(request: Request, key: Caller) -> Response:
    call = call_of(request, key)
    return respond(call, request, await embed_service(call, await parse_body(request, EmbeddingRequest)))


@router.post("/v1/inference/embed", **documented(
    body=json_request(EmbeddingRequest), ok=json_ok(Envelope[EmbeddingResponse], "the embeddings"), errors=INFERENCE))
async def embed(request: Request, key: Key) -> Response:
    return await _embed(request, key)


@router.post("/oai/v1/embeddings", **documented(
    body=json_request(EmbeddingRequest), ok=json_ok(EmbeddingResponse, "the embeddings"), errors=INFERENCE,
    openai=True))
async def openai_embeddings(request: Request, key: Key) -> Response:
    return await _embed(request, key)
