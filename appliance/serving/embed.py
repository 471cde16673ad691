"""The embed service: one path for /v1/inference/embed, /oai/v1/embeddings and a batch's embed lines."""

from __future__ import annotations

from appliance.accounting.units import apply_usage, embed_bound, read_usage
from appliance.protocol.embeddings import EmbeddingRequest
from appliance.serving.context import Call
from appliance.serving.input_size import check_texts
from appliance.serving.metering import reserve
from appliance.serving.models import resolve_model
from appliance.serving.relay import post_json
from appliance.serving.token_ids import texts_of


async def embed(call: Call, body: EmbeddingRequest) -> bytes:
    """Resolve the model, decode token ids, reserve the budget, ask the engine; its OpenAI answer as bytes.

    The engine gets text and counts the model's own tokens of it: the usage is the model's, whatever the client
    tokenized with.
    """
    entry = resolve_model(call, body.model, "embedding")
    texts = await texts_of(body.input, entry, body.model)
    check_texts(entry, texts, "input")
    meter = await reserve(call, "tokens", embed_bound(texts, entry), entry)
    update = {"model": entry.served_model} if texts is body.input else {"model": entry.served_model, "input": texts}
    payload = body.model_copy(update=update).model_dump_json(exclude_none=True)
    answer = await post_json(call, entry, "/embeddings", payload.encode())
    apply_usage(meter.units, read_usage(answer))
    return answer
