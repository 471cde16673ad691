"""The sentence-transformers worker: OpenAI's /v1/embeddings with concurrent requests coalesced into batches."""

from __future__ import annotations

import asyncio
import base64
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import orjson

from appliance.catalogue import ModelEntry
from appliance.protocol.embeddings import TextEmbeddingRequest
from appliance.workers.batching import Batcher
from appliance.workers.server import HotRoutes, WorkerError, create_worker_app, worker_main
from appliance.workers.tokens import token_counter

INLINE_COUNT_CHARS = 64 * 1024  # a request's text up to this is counted on the event loop: a thread hop costs more


def shape_vectors(vectors: np.ndarray, dimensions: int | None) -> np.ndarray:
    """Truncate to ``dimensions`` and re-normalise (Matryoshka style), or pass through."""
    if dimensions is None or dimensions == vectors.shape[1]:
        return vectors
    cut = vectors[:, :dimensions]
    norms = np.linalg.norm(cut, axis=1, keepdims=True)
    return cut / np.where(norms == 0, 1, norms)


def encode_item(index: int, vector: np.ndarray, encoding_format: str) -> dict[str, Any]:
    """One ``protocol.embeddings.Embedding``, as a dict orjson serialises with the vector still a numpy array."""
    if encoding_format == "base64":
        payload: Any = base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
    else:
        payload = np.asarray(vector, dtype=np.float32)  # orjson writes numpy arrays natively, 20x faster than lists
    return {"object": "embedding", "index": index, "embedding": payload}


def build_app(entry: ModelEntry) -> Any:
    import torch
    from sentence_transformers import SentenceTransformer

    options = entry.engine_options
    torch.set_num_threads(int(options.get("threads", torch.get_num_threads())))
    device = options.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
    model = SentenceTransformer(str(entry.path), device=device, local_files_only=True)
    count_tokens = token_counter(model.tokenizer)
    max_tokens = int(options.get("max_tokens_per_input") or model.max_seq_length or 512)
    dimension = int(model.get_embedding_dimension() or 0)
    batch_size = int(options.get("max_batch_size", 64))

    def encode(texts: list[str]) -> np.ndarray:
        with torch.inference_mode():
            return model.encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)

    batcher = Batcher(encode, max_batch=batch_size, max_wait_s=float(options.get("max_wait_ms", 0)) / 1000,
                      fair=options.get("batch_order", "fair") != "arrival")
    counting = ThreadPoolExecutor(max_workers=1, thread_name_prefix="count")  # the counter's own tokenizer copy
    app = HotRoutes(create_worker_app(entry))

    @app.post("/v1/embeddings")
    async def embeddings(raw: bytes) -> bytes:
        req = TextEmbeddingRequest.model_validate_json(raw)
        texts = req.input
        if req.dimensions is not None and req.dimensions > dimension:
            raise WorkerError(400, f"dimensions is {req.dimensions}, but this model's embeddings have "
                                   f"{dimension}; ask for {dimension} or fewer.", "dimensions")
        if sum(len(text) for text in texts) <= INLINE_COUNT_CHARS:
            token_counts = count_tokens(texts)
        else:  # long texts take the tokenizer a while: off the event loop, so health checks are still answered
            token_counts = await asyncio.get_running_loop().run_in_executor(counting, count_tokens, texts)
        for index, count in enumerate(token_counts):
            if count > max_tokens:
                where = f"input[{index}]"
                raise WorkerError(400, f"{where}: This model's maximum context length is {max_tokens} tokens. "
                                       f"However, your input resulted in {count} tokens. Please reduce the length "
                                       "of the input (shorten or split it).", where, code="context_length_exceeded")
        try:
            vectors = shape_vectors(await batcher.submit(texts), req.dimensions)
        except Exception as exc:
            raise WorkerError(500, f"the embedding engine failed: {exc}", error_type="server_error") from exc
        total = sum(token_counts)
        body = {
            "object": "list",
            "data": [encode_item(i, vector, req.encoding_format) for i, vector in enumerate(vectors)],
            "model": entry.slug,
            "usage": {"prompt_tokens": total, "total_tokens": total},
        }
        return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)

    return app


if __name__ == "__main__":
    worker_main(build_app)
