"""What the rerank service sends a backend and makes of a remote's answer: each peer's quirks absorbed.

The answers below are the shapes vLLM 0.32 (pooling/scoring/protocol.py) and
Infinity 0.0.78 (fastapi_schemas/pymodels.py) write; the live paths run in
tests/e2e/test_rerank_api.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.catalogue import ModelEntry
from appliance.protocol.rerank import RerankRequest
from appliance.serving.errors import ApiError, ErrorCode
from appliance.serving.rerank import check_max_tokens_per_doc, in_client_terms, max_documents, remote_answer, \
    upstream_body

LOCAL = ModelEntry(slug="acme/rerank", modality="rerank", engine="sentence-transformers", path=Path("/m"),
                   context_window=512)
REMOTE = ModelEntry(slug="acme/rerank", modality="rerank", engine="remote", url=("http://vllm:8000/v1",),
                    remote_model="BAAI/bge-reranker-v2-m3")


def request(**fields: object) -> RerankRequest:
    return RerankRequest.model_validate({"model": "acme/rerank", "query": "q", "documents": ["a", {"text": "b"}],
                                         **fields})


def sent(entry: ModelEntry, body: RerankRequest, **extra: object) -> dict[str, object]:
    return json.loads(upstream_body(entry, body, body.texts, **extra))  # type: ignore[no-any-return]


def test_documents_go_as_strings_and_top_n_only_when_asked() -> None:
    plain = sent(LOCAL, request())
    assert plain == {"model": "acme/rerank", "query": "q", "documents": ["a", "b"], "return_documents": False,
                     "truncate": "END"}  # no top_n: vLLM reads 0 as all, Infinity refuses it
    assert sent(LOCAL, request(top_n=1))["top_n"] == 1
    assert sent(LOCAL, request(top_n=50))["top_n"] == 2  # never more than were sent


def test_a_remote_is_told_its_name_for_the_model_and_to_cut_what_does_not_fit() -> None:
    cut = sent(REMOTE, request())
    assert cut["model"] == "BAAI/bge-reranker-v2-m3"
    assert cut["truncate_prompt_tokens"] == -1  # vLLM refuses an over-long pair unless told to cut it
    refused = sent(REMOTE, request(truncate="NONE"))
    assert "truncate_prompt_tokens" not in refused and refused["truncate"] == "NONE"


VLLM_ANSWER = {"id": "score-1", "model": "BAAI/bge-reranker-v2-m3", "usage": {"prompt_tokens": 9, "total_tokens": 9},
               "results": [{"index": 1, "document": {"text": "b", "multi_modal": None}, "relevance_score": 0.9},
                           {"index": 0, "document": {"text": "a", "multi_modal": None}, "relevance_score": 0.1}]}
INFINITY_ANSWER = {"object": "rerank", "id": "infinity-1", "created": 1, "model": "bge",
                   "usage": {"prompt_tokens": 9, "total_tokens": 9},
                   "results": [{"relevance_score": 0.9, "index": 1, "document": "b"},
                               {"relevance_score": 0.1, "index": 0, "document": None}]}


@pytest.mark.parametrize("answer", [VLLM_ANSWER, INFINITY_ANSWER], ids=["vllm", "infinity"])
def test_a_remotes_answer_comes_back_as_the_workers(answer: dict[str, object]) -> None:
    body = request()
    plain = json.loads(remote_answer(REMOTE, json.dumps(answer).encode(), body, body.texts))
    assert plain["model"] == "acme/rerank" and plain["usage"]["total_tokens"] == 9
    assert plain["results"] == [{"index": 1, "relevance_score": 0.9}, {"index": 0, "relevance_score": 0.1}]
    assert list(plain)[-1] == "usage"  # where read_usage looks first
    asked = request(return_documents=True, top_n=1)
    top = json.loads(remote_answer(REMOTE, json.dumps(answer).encode(), asked, asked.texts))
    assert top["results"] == [{"index": 1, "relevance_score": 0.9, "document": {"text": "b"}}]


def test_a_remote_answer_that_is_no_ranking_is_a_backend_error() -> None:
    body = request()
    for answer in ({"data": []}, {**VLLM_ANSWER, "results": [{"index": 7, "relevance_score": 0.5}]}):
        with pytest.raises(ApiError) as raised:
            remote_answer(REMOTE, json.dumps(answer).encode(), body, body.texts)
        assert raised.value.code == "BACKEND_ERROR"


def test_the_document_limit_is_the_models_own_option_else_the_setting() -> None:
    assert max_documents(LOCAL, 1000) == 1000
    assert max_documents(LOCAL.model_copy(update={"engine_options": {"max_documents": 64}}), 1000) == 64
    assert max_documents(REMOTE, 250) == 250


def test_cohere_max_tokens_per_doc_goes_to_a_remote_and_is_refused_locally_below_the_window() -> None:
    assert check_max_tokens_per_doc(REMOTE, 256) == {"max_tokens_per_doc": 256}  # vLLM cuts each document
    assert check_max_tokens_per_doc(LOCAL, None) == {} and check_max_tokens_per_doc(LOCAL, 512) == {}
    with pytest.raises(ApiError) as raised:
        check_max_tokens_per_doc(LOCAL, 256)
    assert raised.value.details == [{"field": "max_tokens_per_doc", "message": raised.value.details[0]["message"]}]
    assert "512" in raised.value.message


def test_vllms_refusal_of_an_over_long_pair_names_the_documents() -> None:
    refused = ApiError(ErrorCode.VALIDATION_ERROR, "This model's maximum context length is 512 tokens. …",
                       details=[{"field": "input_tokens", "message": "…"}])
    assert in_client_terms(refused).details == [{"field": "documents", "message": "…"}]
    other = ApiError(ErrorCode.VALIDATION_ERROR, "top_n …", details=[{"field": "top_n", "message": "…"}])
    assert in_client_terms(other).details == [{"field": "top_n", "message": "…"}]
