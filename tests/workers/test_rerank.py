"""The rerank worker, a real process on its Unix socket with the tiny cross-encoder: what it answers and refuses."""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from appliance.catalogue import ModelEntry, load_catalogue
from appliance.protocol.rerank import RerankResponse
from tests.support.worker import RunningWorker, run_worker, started_worker

MODULE = "appliance.workers.rerank"
WINDOW = 512  # the tiny model's
MAX_DOCUMENTS = 64
QUERY = "what is the capital of france"
DOCUMENTS = ["paris is the capital of france", "berlin", "a river in london", "museum", "search rerank model"]


def tiny_entry(tiny_catalogue: Path, slug: str = "scailabs/tiny-rerank", **changes: Any) -> ModelEntry:
    entry = load_catalogue(tiny_catalogue).get(slug)
    assert entry is not None
    return entry.model_copy(update=changes)


@pytest.fixture(scope="module")
def worker(tiny_catalogue: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningWorker]:
    # max_wait_ms: a batch waits a little for more pairs, so that concurrent requests reliably share one.
    options = {"max_documents": MAX_DOCUMENTS, "max_batch_size": 32, "max_wait_ms": 20}
    log = tmp_path_factory.mktemp("rerank-worker") / "worker.log"
    with started_worker(MODULE, tiny_entry(tiny_catalogue, engine_options=options), log, log_level="DEBUG") as running:
        yield running


@pytest.fixture(scope="module")
def tokenizer(tiny_catalogue: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_catalogue.parent / "rerank-tiny")


def rerank(worker: RunningWorker, **body: Any) -> httpx.Response:
    with worker.client() as client:
        return client.post("/v1/rerank", json={"model": "scailabs/tiny-rerank", **body})


def ranked(worker: RunningWorker, **body: Any) -> RerankResponse:
    response = rerank(worker, **body)
    assert response.status_code == 200, response.text
    return RerankResponse.model_validate_json(response.content)


def scores_by_index(answer: RerankResponse) -> dict[int, float]:
    return {result.index: result.relevance_score for result in answer.results}


def refusal(response: httpx.Response) -> tuple[str, str]:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    return error["param"], error["message"]


def test_every_document_gets_its_own_score_most_relevant_first(worker: RunningWorker) -> None:
    answer = ranked(worker, query=QUERY, documents=DOCUMENTS)
    assert answer.model == "scailabs/tiny-rerank" and answer.id.startswith("rerank-")
    assert sorted(r.index for r in answer.results) == list(range(len(DOCUMENTS)))
    scores = [r.relevance_score for r in answer.results]
    assert scores == sorted(scores, reverse=True)
    assert all(0 <= score <= 1 for score in scores)  # the sigmoid of a one-label cross-encoder, as Cohere's are
    assert len(set(scores)) == len(scores)  # random, yet different per document: the order means something
    for index, text in enumerate(DOCUMENTS):  # a document's score is its own, whatever it is ranked among
        [alone] = ranked(worker, query=QUERY, documents=[text]).results
        assert alone.relevance_score == pytest.approx(scores_by_index(answer)[index], abs=1e-5)


def test_the_same_request_gets_the_same_scores(worker: RunningWorker) -> None:
    first, second = (ranked(worker, query=QUERY, documents=DOCUMENTS) for _ in range(2))
    assert [(r.index, r.relevance_score) for r in first.results] == [(r.index, r.relevance_score)
                                                                    for r in second.results]
    other_query = ranked(worker, query="how many people live in berlin", documents=DOCUMENTS)
    assert scores_by_index(other_query) != scores_by_index(first)


def test_top_n_keeps_the_best_and_more_than_sent_means_all(worker: RunningWorker) -> None:
    everything = ranked(worker, query=QUERY, documents=DOCUMENTS)
    top = ranked(worker, query=QUERY, documents=DOCUMENTS, top_n=2)
    assert [r.index for r in top.results] == [r.index for r in everything.results[:2]]
    assert len(ranked(worker, query=QUERY, documents=DOCUMENTS, top_n=50).results) == len(DOCUMENTS)


def test_documents_come_back_only_when_asked_as_objects_with_text(worker: RunningWorker) -> None:
    documents: list[Any] = [DOCUMENTS[0], {"text": DOCUMENTS[1], "title": "ignored"}]
    bare = rerank(worker, query=QUERY, documents=documents).json()
    assert all("document" not in result for result in bare["results"])
    full = ranked(worker, query=QUERY, documents=documents, return_documents=True)
    assert {r.index: r.document.text for r in full.results if r.document} == {0: DOCUMENTS[0], 1: DOCUMENTS[1]}
    assert scores_by_index(full) == scores_by_index(RerankResponse.model_validate(bare))


def test_usage_is_every_pairs_tokens_as_the_models_tokenizer_counts_them(worker: RunningWorker,
                                                                         tokenizer: Any) -> None:
    answer = ranked(worker, query=QUERY, documents=DOCUMENTS)
    expected = sum(len(tokenizer(QUERY, text)["input_ids"]) for text in DOCUMENTS)  # [CLS] q [SEP] d [SEP]
    assert answer.usage.total_tokens == answer.usage.prompt_tokens == expected
    large = [f"paris {i} " * 300 for i in range(40)]  # over 64 KiB of text: counted off the event loop
    read = sum(len(tokenizer(QUERY, text, truncation=True, max_length=WINDOW)["input_ids"]) for text in large)
    assert ranked(worker, query=QUERY, documents=large).usage.total_tokens == read


def test_an_overlong_document_is_cut_to_the_window_unless_the_request_refuses_that(worker: RunningWorker,
                                                                                   tokenizer: Any) -> None:
    long = "paris " * 700
    cut = ranked(worker, query=QUERY, documents=["berlin", long])
    assert cut.usage.total_tokens == len(tokenizer(QUERY, "berlin")["input_ids"]) + WINDOW  # what the model read
    fitted = tokenizer.decode(tokenizer(QUERY, long, truncation="only_second", max_length=WINDOW)["input_ids"],
                              skip_special_tokens=True)
    [fitted_alone] = ranked(worker, query=QUERY, documents=[fitted.removeprefix(QUERY).strip()]).results
    assert scores_by_index(cut)[1] == pytest.approx(fitted_alone.relevance_score, abs=1e-5)  # the end went

    param, message = refusal(rerank(worker, query=QUERY, documents=["berlin", long], truncate="NONE"))
    assert param == "documents[1]" and "has 700 tokens" in message and "truncate" in message
    param, message = refusal(rerank(worker, query="paris " * 600, documents=["berlin"], truncate="none"))
    assert param == "query" and "600 tokens" in message


@pytest.mark.parametrize(("body", "field", "words"), [
    ({"documents": []}, "documents", "empty"),
    ({"documents": "one text"}, "documents", "array"),
    ({"documents": ["ok"] * (MAX_DOCUMENTS + 1)}, "documents", f"at most {MAX_DOCUMENTS}"),
    ({"documents": [{"title": "no text"}]}, "documents[0].text", "required"),
    ({"documents": ["ok", 3]}, "documents[1]", "string"),
    ({"documents": ["ok"], "top_n": 0}, "top_n", "1 or more"),
    ({"documents": ["ok"], "top_n": -2}, "top_n", "1 or more"),
    ({"documents": ["ok"], "query": ""}, "query", "at least 1 character"),
    ({"documents": ["ok"], "truncate": "START"}, "truncate", "'END' or 'NONE'"),
])
def test_bad_requests_are_refused_naming_the_field(worker: RunningWorker, body: dict[str, Any], field: str,
                                                   words: str) -> None:
    param, message = refusal(rerank(worker, **{"query": QUERY, **body}))
    assert param == field and message.startswith(field) and words in message


def test_concurrent_requests_are_scored_together_and_each_gets_its_own_answer(worker: RunningWorker) -> None:
    queries = [f"{QUERY} {i}" for i in range(16)]

    async def all_at_once() -> list[httpx.Response]:
        async with worker.async_client() as client:
            return await asyncio.gather(*(client.post("/v1/rerank", json={"model": "m", "query": q,
                                                                          "documents": DOCUMENTS}) for q in queries))

    together = [RerankResponse.model_validate_json(r.content) for r in asyncio.run(all_at_once())]
    for query, answer in zip(queries, together, strict=True):
        alone = ranked(worker, query=query, documents=DOCUMENTS)
        assert scores_by_index(answer) == pytest.approx(scores_by_index(alone), abs=1e-5)
    batches = [(int(pairs), int(requests)) for pairs, requests
               in re.findall(r"running a batch of (\d+) items from (\d+) requests", worker.log())]
    assert any(requests > 1 for _pairs, requests in batches), batches[-20:]


def test_health_is_answered_while_the_engine_scores(worker: RunningWorker) -> None:
    long_documents = [f"document {i} " + "paris berlin london " * 150 for i in range(MAX_DOCUMENTS)]

    async def health_during_work() -> tuple[int, bool]:
        logged = len(worker.log())
        async with worker.async_client() as client:
            work = [asyncio.ensure_future(client.post("/v1/rerank", json={
                "model": "m", "query": f"{QUERY} {i}", "documents": long_documents})) for i in range(4)]
            while "running a batch" not in worker.log()[logged:] and not all(w.done() for w in work):
                await asyncio.sleep(0.01)  # until the engine thread starts on them
            health = await client.get("/health")
            busy = not all(w.done() for w in work)
            assert all(r.status_code == 200 for r in await asyncio.gather(*work))
            return health.status_code, busy

    status, busy = asyncio.run(health_during_work())
    assert status == 200 and busy


def test_an_embedding_model_is_not_served_as_a_reranker(tiny_catalogue: Path, tmp_path: Path) -> None:
    embedder = tiny_entry(tiny_catalogue, slug="openai/text-embedding-3-small")
    entry = tiny_entry(tiny_catalogue, path=embedder.path)
    exited = run_worker(MODULE, entry, tmp_path / "worker.log")
    assert isinstance(exited, subprocess.CompletedProcess), "the worker served an embedding model as a reranker"
    assert exited.returncode != 0 and "is not a reranker" in exited.stdout and "BertModel" in exited.stdout
