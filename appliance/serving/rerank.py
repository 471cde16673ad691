"""The rerank service: /v1/inference/rerank, /oai/v1/rerank, /oai/v2/rerank (Cohere) and a batch's rerank lines.

Every backend is asked in the Jina / Cohere v1 shape that the rerank worker,
vLLM (``/v1/rerank``) and Infinity (``/rerank``) all read, written so that
each of them takes it:

- documents always as strings (vLLM refuses ``{"text"}`` objects, Infinity
  takes strings only);
- ``top_n`` only when asked, and never more than the documents sent (vLLM
  reads 0 as "all", Infinity refuses anything below 1);
- a remote backend is also told to cut what does not fit its window
  (``truncate_prompt_tokens: -1``: vLLM refuses an over-long pair otherwise),
  as the worker does for ``truncate: "END"``.

The worker's answer goes out as it comes (it is ours: ``document`` only when
asked, ``usage`` last). A remote's is re-read first: vLLM returns
``document`` whatever was asked, Infinity returns it as a bare string.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from appliance.accounting.units import apply_rerank_usage, read_usage, rerank_bound
from appliance.catalogue import ModelEntry
from appliance.protocol.rerank import CohereRerankRequest, CohereRerankResponse, RerankRequest, RerankResponse
from appliance.serving.context import Call
from appliance.serving.errors import ApiError, ErrorCode, from_errors, validation_error
from appliance.serving.input_size import check_texts, check_total
from appliance.serving.metering import budgeted, reserve
from appliance.serving.models import resolve_model
from appliance.serving.relay import post_json

# vLLM's truncate_prompt_tokens for "cut each pair to the model's window" (None there means: refuse it).
WHOLE_WINDOW = -1
# vLLM names what it refuses by its own parameters; to the client, the pair it refused is among its documents.
REMOTE_FIELDS = {"input_tokens": "documents", "input_text": "documents"}


def dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def max_documents(entry: ModelEntry, setting: int) -> int:
    """Documents one request to ``entry`` may send: the model's own ``max_documents`` option, else the setting."""
    option = entry.engine_options.get("max_documents")
    return int(option) if option else setting


def check_request(call: Call, entry: ModelEntry, body: RerankRequest, texts: list[str]) -> None:
    """Refuse, before any engine sees it, a request with more documents or bigger texts than the model takes."""
    most = max_documents(entry, call.runtime.settings.rerank_max_documents)
    if len(texts) > most:
        raise validation_error("documents", f"{len(texts)} documents sent; model '{entry.slug}' ranks at most {most} "
                                            "in one request. Send them in several requests (or keep fewer "
                                            "candidates from the search before reranking).")
    check_total(entry, len(body.query.encode()), "query")
    check_texts(entry, texts, "documents")


def upstream_body(entry: ModelEntry, body: RerankRequest, texts: list[str], **extra: Any) -> bytes:
    """What a backend of ``entry`` is sent (see the module's docstring)."""
    payload: dict[str, Any] = {"model": entry.served_model, "query": body.query, "documents": texts,
                               "return_documents": body.return_documents, "truncate": body.truncate}
    if body.top_n is not None:
        payload["top_n"] = min(body.top_n, len(texts))
    if entry.engine == "remote" and body.truncate == "END":
        payload["truncate_prompt_tokens"] = WHOLE_WINDOW
    payload.update(extra)
    return dumps(payload)


def remote_answer(entry: ModelEntry, answer: bytes, body: RerankRequest, texts: list[str]) -> bytes:
    """A remote's answer as the worker gives it: at most ``top_n`` results, ``document`` only when asked."""
    try:
        read = RerankResponse.model_validate_json(answer)
    except ValidationError:
        raise ApiError(ErrorCode.BACKEND_ERROR, f"A backend of model '{entry.slug}' answered the rerank with "
                                                "something that is not a rerank answer.") from None
    results = read.results[:body.top_n] if body.top_n else read.results
    out = []
    for result in results:
        if result.index >= len(texts):
            raise ApiError(ErrorCode.BACKEND_ERROR, f"A backend of model '{entry.slug}' ranked document "
                                                    f"{result.index} of a request of {len(texts)}.")
        item: dict[str, Any] = {"index": result.index, "relevance_score": result.relevance_score}
        if body.return_documents:
            item["document"] = {"text": texts[result.index]}
        out.append(item)
    # usage last, as the worker has it: read_usage looks from the end
    return dumps({"id": read.id, "model": entry.slug, "results": out, "usage": read.usage.model_dump()})


def in_client_terms(error: ApiError) -> ApiError:
    """A remote's refusal named by the request's own field (vLLM's ``input_tokens`` is the request's documents)."""
    if error.details and error.details[0].get("field") in REMOTE_FIELDS:
        error.details = [{**detail, "field": REMOTE_FIELDS.get(detail.get("field", ""), detail.get("field", ""))}
                         for detail in error.details]
    return error


async def _ranked(call: Call, entry: ModelEntry, body: RerankRequest, **extra: Any) -> bytes:
    texts = body.texts
    check_request(call, entry, body, texts)
    meter = await reserve(call, "tokens", rerank_bound(body.query, texts, entry) if budgeted(call) else 0, entry)
    try:
        answer = await post_json(call, entry, "/rerank", upstream_body(entry, body, texts, **extra))
    except ApiError as exc:
        raise in_client_terms(exc) from None
    if entry.engine == "remote":
        answer = remote_answer(entry, answer, body, texts)
    apply_rerank_usage(meter.units, read_usage(answer))
    return answer


async def rerank(call: Call, body: RerankRequest) -> bytes:
    """Resolve the model, check the request, reserve the budget, ask the engine; the Jina / Cohere v1 answer."""
    return await _ranked(call, resolve_model(call, body.model, "rerank"), body)


def as_rerank_request(body: CohereRerankRequest) -> RerankRequest:
    """Cohere v2's request as the service's, with the service's checks (``top_n`` of 1 or more)."""
    try:
        return RerankRequest.model_validate({"model": body.model, "query": body.query, "documents": body.documents,
                                             "top_n": body.top_n, "return_documents": body.return_documents})
    except ValidationError as exc:
        raise from_errors(list(exc.errors())) from None


def check_max_tokens_per_doc(entry: ModelEntry, value: int | None) -> dict[str, Any]:
    """Cohere's ``max_tokens_per_doc``: passed on to a remote (vLLM cuts each document to it); a local worker cuts
    only whole pairs to its window, so a smaller bound than that window is refused rather than ignored."""
    if value is None:
        return {}
    if entry.engine == "remote":
        return {"max_tokens_per_doc": value}
    window = entry.context_window
    if window is not None and value >= window:
        return {}  # no document beside a query can be longer: nothing to cut
    limit = f"its window of {window} tokens" if window else "its window"
    raise validation_error("max_tokens_per_doc", f"model '{entry.slug}' cuts each query–document pair to {limit} "
                                                 "and cannot cut documents shorter than that; leave "
                                                 "max_tokens_per_doc out" + (f" or send {window} or more"
                                                                             if window else ""))


async def cohere_rerank(call: Call, body: CohereRerankRequest) -> bytes:
    """Cohere's v2 rerank (``client.v2.rerank``): its request in, its ``results`` and ``meta`` out."""
    entry = resolve_model(call, body.model, "rerank")
    request = as_rerank_request(body)
    answer = await _ranked(call, entry, request, **check_max_tokens_per_doc(entry, body.max_tokens_per_doc))
    cohere = CohereRerankResponse.from_rerank(RerankResponse.model_validate_json(answer), len(body.documents),
                                              body.return_documents)
    return cohere.model_dump_json(exclude_none=True).encode()
