"""The sentence-transformers worker: OpenAI's /v1/embeddings with concurrent requests coalesced into batches."""

from __future__ import annotations

import asyncio
import base64
import copy
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from appliance.catalogue import ModelEntry
from appliance.protocol.embeddings import TextEmbeddingRequest
from appliance.workers.server import HotRoutes, WorkerError, create_worker_app, worker_main

log = logging.getLogger("appliance.worker.embeddings")


@dataclass
class _Pending:
    texts: list[str]
    future: asyncio.Future[np.ndarray] = field(repr=False)


class Batcher:
    """Coalesces concurrent requests into one ``encode`` call.

    While one batch is encoding on the engine thread, new requests queue up; the
    next batch takes all of them (up to ``max_batch`` texts), optionally waiting
    ``max_wait_s`` for more. Idle, a lone request goes at once.
    """

    def __init__(self, encode: Any, max_batch: int = 64, max_wait_s: float = 0.0) -> None:
        self._encode = encode
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._engine = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encode")
        self._task: asyncio.Task[None] | None = None

    async def embed(self, texts: list[str]) -> np.ndarray:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(texts, future))
        return await future

    async def _next_batch(self) -> list[_Pending]:
        batch = [await self._queue.get()]
        size = len(batch[0].texts)
        deadline = asyncio.get_running_loop().time() + self.max_wait_s
        while size < self.max_batch:
            try:
                if self._queue.empty() and self.max_wait_s > 0:
                    timeout = deadline - asyncio.get_running_loop().time()
                    if timeout <= 0:
                        break
                    item = await asyncio.wait_for(self._queue.get(), timeout)
                else:
                    item = self._queue.get_nowait()
            except (asyncio.QueueEmpty, TimeoutError):
                break
            batch.append(item)
            size += len(item.texts)
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            texts = [text for pending in batch for text in pending.texts]
            try:
                vectors = await loop.run_in_executor(self._engine, self._encode, texts)
            except Exception as exc:  # the engine failed: every request of the batch learns why
                log.exception("encode failed for a batch of %d texts", len(texts))
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(exc)
                continue
            start = 0
            for pending in batch:
                end = start + len(pending.texts)
                if not pending.future.done():
                    pending.future.set_result(vectors[start:end])
                start = end


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


def token_counter(tokenizer: Any) -> Any:
    """Tokens per text, special tokens included, never truncated: what a request is charged and checked by.

    Fast tokenizers are not thread-safe: counting on the event loop while the
    engine thread encodes corrupted the engine's padding, so the counter gets its
    own copy. A fast one is asked through its Rust ``encode_batch``: the Python
    ``__call__`` around it was a sixth of the worker's CPU per request.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
    if backend is None:
        own = copy.deepcopy(tokenizer)
        return lambda texts: [len(ids) for ids in own(texts, add_special_tokens=True)["input_ids"]]
    rust = copy.deepcopy(backend)
    rust.no_truncation()
    rust.no_padding()
    return lambda texts: [len(encoding.ids) for encoding in rust.encode_batch(texts, add_special_tokens=True)]


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

    batcher = Batcher(encode, max_batch=batch_size, max_wait_s=float(options.get("max_wait_ms", 0)) / 1000)
    app = HotRoutes(create_worker_app(entry))

    @app.post("/v1/embeddings")
    async def embeddings(raw: bytes) -> bytes:
        req = TextEmbeddingRequest.model_validate_json(raw)
        texts = req.input
        if req.dimensions is not None and req.dimensions > dimension:
            raise WorkerError(400, f"dimensions is {req.dimensions}, but this model's embeddings have "
                                   f"{dimension}; ask for {dimension} or fewer.", "dimensions")
        token_counts = count_tokens(texts)
        for index, count in enumerate(token_counts):
            if count > max_tokens:
                where = f"input[{index}]"
                raise WorkerError(400, f"{where}: This model's maximum context length is {max_tokens} tokens. "
                                       f"However, your input resulted in {count} tokens. Please reduce the length "
                                       "of the input (shorten or split it).", where, code="context_length_exceeded")
        try:
            vectors = shape_vectors(await batcher.embed(texts), req.dimensions)
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
