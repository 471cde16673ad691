"""POST /v1/inference/embed (enveloped) and POST /oai/v1/embeddings (plain OpenAI)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from appliance.accounting.units import apply_usage, embed_bound, read_usage
from appliance.db.keys import ApiKey
from appliance.gateway.auth import require
from appliance.gateway.body import parse_body
from appliance.gateway.errors import ok_raw
from appliance.gateway.metering import reserve
from appliance.gateway.openapi import INFERENCE, Envelope, documented, json_ok, json_request
from appliance.gateway.relay import post_json, resolve_model
from appliance.protocol.embeddings import EmbeddingRequest, EmbeddingResponse

router = APIRouter()

Key = Annotated[ApiKey, Depends(require("models:use"))]


async def _embed(request: Request, key: ApiKey) -> bytes:
    body = await parse_body(request, EmbeddingRequest)
    entry = resolve_model(request, key, body.model, "embedding")
    meter = await reserve(request, key, "tokens", embed_bound(body.input, entry))
    payload = body.model_copy(update={"model": entry.served_model}).model_dump_json(exclude_none=True)
    answer = await post_json(request, entry, "/embeddings", payload.encode())
    apply_usage(meter.units, read_usage(answer))
    return answer


@router.post("/v1/inference/embed", **documented(
    body=json_request(EmbeddingRequest), ok=json_ok(Envelope[EmbeddingResponse], "the embeddings"), errors=INFERENCE))
async def embed(request: Request, key: Key) -> Response:
    return ok_raw(await _embed(request, key), request)


@router.post("/oai/v1/embeddings", **documented(
    body=json_request(EmbeddingRequest), ok=json_ok(EmbeddingResponse, "the embeddings"), errors=INFERENCE,
    openai=True))
async def openai_embeddings(request: Request, key: Key) -> Response:
    return Response(await _embed(request, key), media_type="application/json")
