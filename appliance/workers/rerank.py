"""The rerank worker: ``POST /v1/rerank`` on sentence-transformers' CrossEncoder, pairs of concurrent requests batched.

Every document is scored as one (query, document) pair. Pairs of concurrent
requests are coalesced into one engine call on the engine thread (the event
loop keeps answering ``/health`` meanwhile), scored by ``PairScorer``: the
CrossEncoder's own scores, the next batch tokenized while the model runs this
one (pair_scoring.py). At most ``max_queued_pairs`` wait; beyond that a
request is answered 429 with a Retry-After estimated from the measured pace,
which the gateway passes on as BACKEND_RATE_LIMITED.

A pair longer than the model's window is cut to fit (the end of the longer of
query and document goes first), as every peer does, or refused when the
request says ``truncate: "NONE"``. ``usage`` counts the tokens the model read:
every pair's, special tokens included, after any cut (vLLM counts the same).

engine_options (``CrossEncoderOptions``): ``max_batch_size``, ``max_wait_ms``,
``max_documents``, ``max_queued_pairs``, ``max_length``, ``dtype``, ``device``, ``threads``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from appliance.catalogue import ModelEntry
from appliance.engines.options import CrossEncoderOptions
from appliance.protocol.rerank import RerankRequest
from appliance.workers.batching import Batcher, QueueFull
from appliance.workers.pair_scoring import Pair, PairScorer
from appliance.workers.server import HotRoutes, WorkerError, create_worker_app, worker_main
from appliance.workers.tokens import token_counter

log = logging.getLogger("appliance.worker.rerank")

DEFAULT_MAX_BATCH = 64
DEFAULT_MAX_DOCUMENTS = 1000
QUEUE_REQUESTS = 4  # default bound of waiting pairs: this many requests of the most documents allowed
INLINE_COUNT_CHARS = 64 * 1024  # a request's text up to this is counted on the event loop: a thread hop costs more
# One engine call takes up to this many forward batches of the pairs waiting: predict sorts a call's pairs by length,
# so the more it sees the less padding (bench/rerank.py, 8 clients: CPU per pair 0.67 → 0.80 of the ceiling).
BATCHES_PER_CALL = 8


@dataclass(frozen=True)
class PairTokens:
    """Tokens of each (query, document) pair as the model's tokenizer makes them, before and after the cut."""

    query: int
    specials: int
    documents: list[int]
    window: int

    def whole(self, index: int) -> int:
        return self.query + self.documents[index] + self.specials

    @property
    def read(self) -> int:
        """What the model reads: each pair, cut to the window."""
        return sum(min(self.whole(i), self.window) for i in range(len(self.documents)))


def pair_token_counter(tokenizer: Any, window: int) -> Callable[[str, list[str]], PairTokens]:
    """Counts a query once and each document once: a pair is their sum plus the tokenizer's pair specials."""
    count = token_counter(tokenizer, special_tokens=False)
    specials = int(tokenizer.num_special_tokens_to_add(pair=True))

    def pair_tokens(query: str, documents: list[str]) -> PairTokens:
        [query_tokens] = count([query])
        return PairTokens(query_tokens, specials, count(documents) if documents else [], window)

    return pair_tokens


def refuse_overlong(tokens: PairTokens) -> None:
    """For ``truncate: "NONE"``: the first pair that does not fit the window, as a 400 naming its field."""
    if tokens.query + tokens.specials > tokens.window:
        raise WorkerError(400, f"query has {tokens.query} tokens; this model reads at most {tokens.window} per "
                               "query–document pair. Shorten it, or send truncate \"END\" to cut what does not fit.",
                          "query")
    for index in range(len(tokens.documents)):
        if tokens.whole(index) > tokens.window:
            room = tokens.window - tokens.query - tokens.specials
            raise WorkerError(400, f"documents[{index}] has {tokens.documents[index]} tokens; beside this query "
                                   f"this model reads at most {room}. Shorten or split it, or send truncate \"END\" "
                                   "to cut what does not fit.", f"documents[{index}]")


def ranked(scores: np.ndarray, top_n: int | None, texts: list[str] | None) -> list[dict[str, Any]]:
    """Results most relevant first (ties in document order), the first ``top_n`` of them, with texts if given."""
    order = np.argsort(-scores, kind="stable")[: top_n or len(scores)]
    values = scores.tolist()
    results: list[dict[str, Any]] = []
    for index in order.tolist():
        result: dict[str, Any] = {"index": index, "relevance_score": values[index]}
        if texts is not None:
            result["document"] = {"text": texts[index]}
        results.append(result)
    return results


def load_reranker(entry: ModelEntry, options: CrossEncoderOptions) -> Any:
    """The entry's CrossEncoder; a model that is no reranker ends the worker with a sentence saying so."""
    import torch
    from sentence_transformers import CrossEncoder

    device = options.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model_kwargs = {"dtype": getattr(torch, options.dtype)} if options.dtype else None
    model = CrossEncoder(str(entry.path), device=device, local_files_only=True, max_length=options.max_length,
                         model_kwargs=model_kwargs)
    architectures = list(getattr(model.config, "architectures", None) or [])
    if not any(name.endswith("ForSequenceClassification") for name in architectures):
        raise SystemExit(f"model '{entry.slug}': {entry.path} is not a reranker: its config.json names "
                         f"{', '.join(architectures) or 'no architecture'}, not a …ForSequenceClassification model "
                         "(an embedding model cannot rerank; its scores would come from an untrained head).")
    if model.num_labels != 1:
        raise SystemExit(f"model '{entry.slug}': {entry.path} classifies into {model.num_labels} labels; a reranker "
                         "gives one relevance score per pair (num_labels = 1).")
    return model


def build_app(entry: ModelEntry) -> Any:
    import torch

    options = CrossEncoderOptions.model_validate(entry.engine_options)
    if options.threads:
        torch.set_num_threads(options.threads)
    model = load_reranker(entry, options)
    window = int(model.max_seq_length)
    count_pairs = pair_token_counter(model.tokenizer, window)
    batch_size = options.max_batch_size or DEFAULT_MAX_BATCH
    max_documents = options.max_documents or DEFAULT_MAX_DOCUMENTS

    batcher: Batcher[Pair] = Batcher(PairScorer(model, batch_size), max_batch=BATCHES_PER_CALL * batch_size,
                                     max_wait_s=(options.max_wait_ms or 0) / 1000,
                                     max_waiting=options.max_queued_pairs or QUEUE_REQUESTS * max_documents)
    log.info("%s: window %d tokens, batches of %d pairs, at most %d documents a request", entry.slug, window,
             batch_size, max_documents)
    counting = ThreadPoolExecutor(max_workers=1, thread_name_prefix="count")  # the counter's own tokenizer copy
    app = HotRoutes(create_worker_app(entry))

    @app.post("/v1/rerank")
    async def rerank(raw: bytes) -> bytes:
        req = RerankRequest.model_validate_json(raw)
        texts = req.texts
        if len(texts) > max_documents:
            raise WorkerError(400, f"documents has {len(texts)} entries; this model takes at most {max_documents} "
                                   "a request. Send them in several requests.", "documents")
        if len(req.query) + sum(len(text) for text in texts) <= INLINE_COUNT_CHARS:
            tokens = count_pairs(req.query, texts)
        else:  # a thousand long documents take the tokenizer a while: off the event loop, so /health still answers
            tokens = await asyncio.get_running_loop().run_in_executor(counting, count_pairs, req.query, texts)
        if req.truncate == "NONE":
            refuse_overlong(tokens)
        try:
            scores = await batcher.submit([(req.query, text) for text in texts])
        except QueueFull as full:
            raise WorkerError(429, f"The rerank model is busy: {full.waiting} query–document pairs are waiting, the "
                                   f"most it queues. Retry in {full.retry_after_s} s.", error_type="rate_limit_error",
                              retry_after=full.retry_after_s) from None
        except Exception as exc:
            raise WorkerError(500, f"the rerank engine failed: {exc}", error_type="server_error") from exc
        read = tokens.read
        body = {  # usage last: the gateway finds it from the end without decoding the results
            "id": f"rerank-{uuid.uuid4().hex}",
            "model": entry.slug,
            "results": ranked(scores, req.top_n, texts if req.return_documents else None),
            "usage": {"prompt_tokens": read, "total_tokens": read},
        }
        return orjson.dumps(body)

    return app


if __name__ == "__main__":
    worker_main(build_app)
