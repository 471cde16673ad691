"""The rerank protocol: the request every peer's clients send, the answers of every peer read, Cohere's v2 shape."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from appliance.protocol.rerank import CohereRerankRequest, CohereRerankResponse, RerankRequest, RerankResponse


def test_documents_are_strings_or_objects_with_text_and_truncation_is_asked_in_any_case() -> None:
    req = RerankRequest.model_validate({"model": "m", "query": "q", "documents": ["a", {"text": "b", "id": 7}],
                                        "truncate": "none"})
    assert req.texts == ["a", "b"] and req.truncate == "NONE"
    assert req.top_n is None and req.return_documents is False  # Cohere's defaults: all, scores only


def test_an_empty_document_is_a_document_but_an_empty_query_is_not() -> None:
    assert RerankRequest.model_validate({"model": "m", "query": "q", "documents": [""]}).texts == [""]
    with pytest.raises(ValidationError):
        RerankRequest.model_validate({"model": "m", "query": "", "documents": ["a"]})


@pytest.mark.parametrize("answer", [
    # vLLM 0.32 (pooling/scoring/serving.py): document always, prompt_tokens beside total_tokens
    {"id": "score-1", "model": "bge", "usage": {"prompt_tokens": 9, "total_tokens": 9},
     "results": [{"index": 1, "document": {"text": "b", "multi_modal": None}, "relevance_score": 0.9},
                 {"index": 0, "document": {"text": "a", "multi_modal": None}, "relevance_score": 0.1}]},
    # Infinity 0.0.77 (fastapi_schemas/pymodels.py ReRankResult): the document a bare string, object and created
    {"object": "rerank", "id": "infinity-1", "created": 1, "model": "bge", "usage": {"prompt_tokens": 9,
                                                                                     "total_tokens": 9},
     "results": [{"relevance_score": 0.9, "index": 1, "document": "b"},
                 {"relevance_score": 0.1, "index": 0, "document": "a"}]},
])
def test_the_answers_of_vllm_and_infinity_read_as_the_workers(answer: dict[str, object]) -> None:
    read = RerankResponse.model_validate(answer)
    assert [(r.index, r.document.text if r.document else None) for r in read.results] == [(1, "b"), (0, "a")]
    assert read.usage.total_tokens == 9


def test_cohere_v2_gets_results_and_meta_and_documents_only_when_asked() -> None:
    answer = RerankResponse.model_validate({"id": "rerank-1", "model": "m", "usage": {"total_tokens": 40},
                                            "results": [{"index": 1, "relevance_score": 0.9, "document": {"text": "b"}},
                                                        {"index": 0, "relevance_score": 0.1}]})
    plain = CohereRerankResponse.from_rerank(answer, documents=201, return_documents=False).model_dump(
        exclude_none=True)
    assert plain == {"id": "rerank-1", "results": [{"index": 1, "relevance_score": 0.9},
                                                   {"index": 0, "relevance_score": 0.1}],
                     "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 3},
                              "tokens": {"input_tokens": 40}}}
    asked = CohereRerankResponse.from_rerank(answer, documents=2, return_documents=True)
    assert asked.results[0].document is not None and asked.results[0].document.text == "b"


def test_cohere_v2_requests_as_its_sdk_sends_them() -> None:
    req = CohereRerankRequest.model_validate({"model": "rerank-v3.5", "query": "q", "documents": ["a", "b"],
                                              "top_n": 1, "max_tokens_per_doc": 512, "priority": 0})
    assert req.documents == ["a", "b"] and req.top_n == 1 and req.max_tokens_per_doc == 512
