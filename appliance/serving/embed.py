"""The embed service: one path for /v1/inference/embed, /oai/v1/embeddings and a batch's embed lines."""

from __future__ import annotations

from appliance.accounting.units import apply_usage, embed_bound, read_usage
from appliance.protocol.embeddings import EmbeddingRequest
from appliance.serving.context import Call
from appliance.serving.input_size import check_texts
from appliance.serving.metering import reserve
from appliance.serving.models import resolve_model
from appliance.serving.relay import post_json


async def embed(call: Call, body: EmbeddingRequest) -> bytes:
    """Resolve the model, reserve the budget, ask the engine; its OpenAI answer as bytes."""
    entry = resolve_model(call, body.model, "embedding")
    check_texts(entry, body.input, "input")
    meter = await reserve(call, "tokens", embed_bound(body.input, entry), entry)
    payload = body.model_copy(update={"model": entry.served_model}).model_dump_json(exclude_none=True)
    answer = await post_json(call, entry, "/embeddings", payload.encode())
    apply_usage(meter.units, read_usage(answer))
    return answer
