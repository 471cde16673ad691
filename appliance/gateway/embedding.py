"""The embed service: one path for /v1/inference/embed, /oai/v1/embeddings and a batch's embed lines."""

from __future__ import annotations

from appliance.accounting.units import apply_usage, embed_bound, read_usage
from appliance.db.keys import ApiKey
from appliance.gateway.body import parse_json
from appliance.gateway.context import Caller
from appliance.gateway.metering import reserve
from appliance.gateway.relay import post_json, resolve_model
from appliance.protocol.embeddings import EmbeddingRequest


async def embed(caller: Caller, key: ApiKey, raw: bytes) -> bytes:
    """Validate, resolve the model, reserve the budget, ask the engine; its OpenAI answer as bytes."""
    body = parse_json(raw, EmbeddingRequest)
    entry = resolve_model(caller, key, body.model, "embedding")
    meter = await reserve(caller, key, "tokens", embed_bound(body.input, entry))
    payload = body.model_copy(update={"model": entry.served_model}).model_dump_json(exclude_none=True)
    answer = await post_json(caller, entry, "/embeddings", payload.encode())
    apply_usage(meter.units, read_usage(answer))
    return answer
