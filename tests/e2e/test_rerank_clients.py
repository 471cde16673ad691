"""The rerank clients people already have, pointed at the box with only a base URL and a key (pinned in the test
extra): the ``cohere`` SDK (v2 and v1), LangChain's CohereRerank, LlamaIndex's CohereRerank and JinaRerank.

LangChain's JinaRerank (langchain-community) posts to a URL fixed in its module
and takes no base URL, so it cannot be pointed at the box (docs/rerank.md).
The appliance is the one of test_rerank_api.py (``rerank_appliance``).
"""

from __future__ import annotations

from typing import Any

import cohere
import pytest

from tests.support.appliance import RunningAppliance

RERANK = "scailabs/tiny-rerank"
QUERY = "What is the capital of France?"
DOCS = ["Berlin is the capital of Germany.", "Paris is the capital of France.", "France borders Spain.",
        "The Eiffel Tower is in Paris."]


@pytest.fixture(scope="module")
def key(rerank_appliance: RunningAppliance) -> str:
    return rerank_appliance.create_key()


@pytest.fixture(scope="module")
def ranking(rerank_appliance: RunningAppliance, key: str) -> list[tuple[int, float]]:
    """The order and scores of DOCS as the appliance's own surface gives them: what every client must show."""
    with rerank_appliance.client(key) as http:
        answer = http.post("/v1/inference/rerank", json={"model": RERANK, "query": QUERY, "documents": DOCS})
    assert answer.status_code == 200, answer.text
    return [(r["index"], r["relevance_score"]) for r in answer.json()["data"]["results"]]


def same(got: list[tuple[int, float]], want: list[tuple[int, float]]) -> bool:
    return [i for i, _ in got] == [i for i, _ in want] and all(
        abs(a - b) < 1e-5 for (_, a), (_, b) in zip(got, want, strict=True))


def test_the_cohere_sdk_v2_reranks_with_only_base_url_and_the_key(rerank_appliance: RunningAppliance, key: str,
                                                                  ranking: list[tuple[int, float]]) -> None:
    client = cohere.ClientV2(api_key=key, base_url=f"{rerank_appliance.url}/oai")
    answer = client.rerank(model="rerank-v3.5", query=QUERY, documents=DOCS, top_n=2)
    assert same([(r.index, r.relevance_score) for r in answer.results], ranking[:2])
    assert answer.meta is not None and answer.meta.billed_units is not None
    assert answer.meta.billed_units.search_units == 1
    # The same through the v1 client's v2 namespace.
    legacy = cohere.Client(api_key=key, base_url=f"{rerank_appliance.url}/oai")
    assert same([(r.index, r.relevance_score) for r in legacy.v2.rerank(model="cohere/rerank-v3.5", query=QUERY,
                                                                       documents=DOCS).results], ranking)


def test_the_cohere_sdk_v1_reranks_strings_and_objects_and_returns_documents(rerank_appliance: RunningAppliance,
                                                                           key: str,
                                                                           ranking: list[tuple[int, float]]) -> None:
    client = cohere.Client(api_key=key, base_url=f"{rerank_appliance.url}/oai")
    documents: list[Any] = [DOCS[0], {"text": DOCS[1]}, DOCS[2], {"text": DOCS[3]}]
    answer = client.rerank(model="rerank-v3.5", query=QUERY, documents=documents, top_n=3, return_documents=True)
    assert same([(r.index, r.relevance_score) for r in answer.results], ranking[:3])
    assert [r.document.text if r.document else None for r in answer.results] == [DOCS[r.index] for r in answer.results]


def test_the_cohere_sdk_sees_a_clear_error_for_bad_input(rerank_appliance: RunningAppliance, key: str) -> None:
    client = cohere.ClientV2(api_key=key, base_url=f"{rerank_appliance.url}/oai", timeout=30)
    with pytest.raises(cohere.core.api_error.ApiError) as raised:
        client.rerank(model="openai/text-embedding-3-small", query=QUERY, documents=DOCS)
    assert raised.value.status_code in (400, 422)
    assert isinstance(raised.value.body, dict)
    error = raised.value.body["error"]
    assert error["param"] == "model" and "needs a rerank model" in error["message"]


def test_langchains_cohere_rerank_compresses_documents_at_the_box(rerank_appliance: RunningAppliance, key: str,
                                                                 ranking: list[tuple[int, float]]) -> None:
    from langchain_cohere import CohereRerank
    from langchain_core.documents import Document

    reranker = CohereRerank(model="rerank-v3.5", cohere_api_key=key, base_url=f"{rerank_appliance.url}/oai", top_n=2)
    kept = reranker.compress_documents([Document(page_content=d, metadata={"n": i}) for i, d in enumerate(DOCS)],
                                       QUERY)
    assert same([(d.metadata["n"], d.metadata["relevance_score"]) for d in kept], ranking[:2])


def nodes() -> list[Any]:
    from llama_index.core.schema import NodeWithScore, TextNode

    return [NodeWithScore(node=TextNode(text=d, id_=f"doc-{i}")) for i, d in enumerate(DOCS)]


def test_llamaindexs_cohere_rerank_postprocesses_nodes_at_the_box(rerank_appliance: RunningAppliance, key: str,
                                                                 ranking: list[tuple[int, float]]) -> None:
    from llama_index.postprocessor.cohere_rerank import CohereRerank

    reranker = CohereRerank(model="rerank-v3.5", api_key=key, base_url=f"{rerank_appliance.url}/oai", top_n=2,
                            max_retries=1)
    kept = reranker.postprocess_nodes(nodes(), query_str=QUERY)
    assert same([(int(n.node.id_.removeprefix("doc-")), n.score) for n in kept], ranking[:2])


def test_llamaindexs_jina_rerank_postprocesses_nodes_at_the_box(rerank_appliance: RunningAppliance, key: str,
                                                               ranking: list[tuple[int, float]]) -> None:
    from llama_index.postprocessor.jinaai_rerank import JinaRerank

    reranker = JinaRerank(model="rerank-v3.5", api_key=key, base_url=f"{rerank_appliance.url}/oai/v1", top_n=3)
    kept = reranker.postprocess_nodes(nodes(), query_str=QUERY)
    assert same([(int(n.node.id_.removeprefix("doc-")), n.score) for n in kept], ranking[:3])

