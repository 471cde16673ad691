"""Rerank end to end: /v1/inference/rerank, /oai/v1/rerank (Jina, Cohere v1) and /oai/v2/rerank (Cohere v2).

The real gateway and the tiny cross-encoder's worker; one appliance for this
module and test_rerank_clients.py (``rerank_appliance`` in tests/conftest.py).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.batch.helpers import b64, jsonl, read_lines, wait_batch
from tests.support.appliance import RunningAppliance

RERANK = "scailabs/tiny-rerank"
EMBED = "openai/text-embedding-3-small"
WINDOW = 512  # the tiny reranker's context_window: its worker's max_length
QUERY = "What is the capital of France?"
DOCS = ["Berlin is the capital of Germany.", "Paris is the capital of France.", "France borders Spain."]
PATHS = ("/v1/inference/rerank", "/oai/v1/rerank", "/oai/v2/rerank")
MANAGER = ["models:list", "models:use", "api_keys:manage", "admin:access"]


@pytest.fixture(scope="module")
def key(rerank_appliance: RunningAppliance) -> str:
    return rerank_appliance.create_key()


@pytest.fixture(scope="module")
def http(rerank_appliance: RunningAppliance, key: str) -> Iterator[httpx.Client]:
    with rerank_appliance.client(key) as client:
        yield client


@pytest.fixture(scope="module")
def admin(rerank_appliance: RunningAppliance) -> Iterator[httpx.Client]:
    with rerank_appliance.client(rerank_appliance.create_key(*[a for p in MANAGER for a in ("-p", p)])) as client:
        yield client


def rerank(client: httpx.Client, path: str = "/v1/inference/rerank", **body: Any) -> httpx.Response:
    return client.post(path, json={"model": "rerank-v3.5", "query": QUERY, "documents": DOCS, **body})


def data(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body = response.json()
    return body["data"] if "status" in body else body


def pairs(results: list[dict[str, Any]]) -> list[tuple[int, float]]:
    return [(r["index"], round(r["relevance_score"], 5)) for r in results]


def pair_bound(query: str, documents: list[str]) -> int:
    """The most a request may use, as the gateway reserves it: each pair's bytes (+4 specials), cut to the window."""
    return sum(min(WINDOW, len(query.encode()) + len(doc.encode()) + 4) for doc in documents)


def test_the_enveloped_answer_ranks_every_document_most_relevant_first(http: httpx.Client) -> None:
    response = rerank(http)
    body = response.json()
    assert body["status"] == "ok" and body["meta"]["request_id"] == response.headers["x-scaigrid-request-id"]
    answer = data(response)
    assert answer["model"] == RERANK and response.headers["x-scaigrid-model"] == RERANK
    assert response.headers["x-scaigrid-backend"]
    assert sorted(r["index"] for r in answer["results"]) == [0, 1, 2]
    scores = [r["relevance_score"] for r in answer["results"]]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == 3
    assert all("document" not in r for r in answer["results"])  # only when asked
    assert 0 < answer["usage"]["total_tokens"] <= pair_bound(QUERY, DOCS)


def test_top_n_return_documents_and_documents_as_objects(http: httpx.Client) -> None:
    full = data(rerank(http))["results"]
    objects = [{"text": doc, "id": f"doc-{i}"} for i, doc in enumerate(DOCS)]  # Jina's and Cohere v1's objects
    top = data(rerank(http, documents=objects, top_n=2, return_documents=True))["results"]
    assert pairs(top) == pairs(full)[:2]
    assert [r["document"] for r in top] == [{"text": DOCS[r["index"]]} for r in top]
    assert pairs(data(rerank(http, top_n=10))["results"]) == pairs(full)  # more than sent: every document


def test_the_three_surfaces_rank_alike_each_in_its_own_shape(http: httpx.Client) -> None:
    scaigrid = data(rerank(http))
    jina = rerank(http, "/oai/v1/rerank").json()
    cohere = rerank(http, "/oai/v2/rerank").json()
    assert set(jina) == {"id", "model", "results", "usage"}  # no envelope
    assert set(cohere) == {"id", "results", "meta"}
    assert pairs(jina["results"]) == pairs(cohere["results"]) == pairs(scaigrid["results"])
    assert cohere["meta"] == {"api_version": {"version": "2"}, "billed_units": {"search_units": 1},
                              "tokens": {"input_tokens": jina["usage"]["total_tokens"]}}


def test_a_document_longer_than_the_window_is_cut_unless_the_request_refuses_it(http: httpx.Client) -> None:
    long = "words that go on " * 400  # about 1,600 tokens
    cut = data(rerank(http, documents=["short", long]))
    assert {r["index"] for r in cut["results"]} == {0, 1}
    assert WINDOW < cut["usage"]["total_tokens"] <= 2 * WINDOW - WINDOW // 2  # the long pair read as a full window
    for path in ("/v1/inference/rerank", "/oai/v1/rerank"):
        refused = rerank(http, path, documents=["short", long], truncate="NONE")
        field, message = error_of(refused)
        assert field == "documents[1]" and 'truncate "END"' in message, message


def error_of(response: httpx.Response) -> tuple[str, str]:
    """(field, message) of a validation error on either surface."""
    # /v1 answers 422; the /oai surfaces' validation status is OpenAI's (422 here, 400 once issue 22 lands).
    assert response.status_code in (400, 422), response.text
    body = response.json()
    if "status" in body:
        assert body["status"] == "error" and body["error"]["code"] == "VALIDATION_ERROR"
        return body["error"]["details"][0]["field"], body["error"]["message"]
    assert body["error"]["type"] == "invalid_request_error"
    return body["error"]["param"], body["error"]["message"]


BAD_INPUT = [
    pytest.param({"documents": []}, "documents", "at least one document", id="no-documents"),
    pytest.param({"documents": "one document"}, "documents", "", id="documents-not-a-list"),
    pytest.param({"documents": ["x"] * 1001}, "documents", "at most 1000", id="too-many-documents"),
    pytest.param({"top_n": 0}, "top_n", "1 or more", id="top-n-zero"),
    pytest.param({"top_n": -2}, "top_n", "1 or more", id="top-n-negative"),
    pytest.param({"top_n": "two"}, "top_n", "", id="top-n-not-a-number"),
    pytest.param({"query": ""}, "query", "", id="empty-query"),
    pytest.param({"query": "q" * (300 * 1024)}, "query", "longer than model", id="query-far-over-the-window"),
    pytest.param({"model": EMBED}, "model", "is an embedding model; this endpoint needs a rerank model",
                 id="an-embedding-model"),
]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("change", "field", "says"), BAD_INPUT)
def test_bad_input_gets_a_validation_error_naming_the_field(http: httpx.Client, path: str, change: dict[str, Any],
                                                            field: str, says: str) -> None:
    named, message = error_of(rerank(http, path, **change))
    assert named == field and says in message, message


@pytest.mark.parametrize("path", PATHS[:2])
def test_a_document_object_without_text_is_named(http: httpx.Client, path: str) -> None:
    assert error_of(rerank(http, path, documents=["fine", {"title": "no text"}]))[0] == "documents[1].text"


def test_cohere_max_tokens_per_doc_is_refused_only_below_the_window(http: httpx.Client) -> None:
    assert data(rerank(http, "/oai/v2/rerank", max_tokens_per_doc=WINDOW))["results"]
    field, message = error_of(rerank(http, "/oai/v2/rerank", max_tokens_per_doc=100))
    assert field == "max_tokens_per_doc" and f"send {WINDOW} or more" in message


def test_an_unknown_model_is_not_found_on_every_surface(http: httpx.Client) -> None:
    for path in PATHS:
        response = rerank(http, path, model="no/such-reranker")
        assert response.status_code == 404, response.text
        error = response.json()["error"]
        assert error["code"] in ("MODEL_NOT_FOUND", "model_not_found") and "no/such-reranker" in error["message"]


def test_a_key_may_rerank_only_with_models_on_its_allow_list(rerank_appliance: RunningAppliance) -> None:
    with rerank_appliance.client(rerank_appliance.create_key("--model", EMBED)) as denied:
        response = rerank(denied)
        assert response.status_code == 403 and response.json()["error"]["code"] == "MODEL_ACCESS_DENIED"
    with rerank_appliance.client(rerank_appliance.create_key("--model", "cohere/rerank-v3.5")) as allowed:
        assert data(rerank(allowed, "/oai/v2/rerank"))["results"]  # an alias on the list allows the model


def test_a_rate_limited_key_is_stopped_at_its_limit(rerank_appliance: RunningAppliance) -> None:
    with rerank_appliance.client(rerank_appliance.create_key("--rate-limit", "2")) as client:
        statuses = [rerank(client, path).status_code for path in PATHS]
        assert statuses[:2] == [200, 200] and statuses[2] == 429


def budgeted(appliance: RunningAppliance, admin: httpx.Client, tokens: int) -> tuple[str, httpx.Client]:
    made = admin.post("/v1/api-keys", json={"name": "rerank-budget", "budget": {"period": "day", "tokens": tokens}})
    assert made.status_code == 201, made.text
    return made.json()["data"]["id"], appliance.client(made.json()["data"]["key"])


def test_a_token_budget_reserves_each_pair_cut_to_the_window_and_settles_to_the_engines_count(
        rerank_appliance: RunningAppliance, admin: httpx.Client) -> None:
    limit = 2 * WINDOW
    key_id, client = budgeted(rerank_appliance, admin, limit)
    with client:
        used = data(rerank(client))["usage"]["total_tokens"]
        spend = next(s for s in admin.get(f"/v1/api-keys/{key_id}").json()["data"]["budget"]["spend"])
        assert spend == {"unit": "tokens", "limit": limit, "spent": used, "reserved": 0, "remaining": limit - used}
        # Three long documents could take three full windows: more than is left, however few tokens they are.
        long = ["a long passage " * 60] * 3
        refused = rerank(client, documents=long)
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "BUDGET_EXCEEDED"
        found = re.search(r"([\d.]+) left, this request may use up to ([\d.]+)", refused.json()["error"]["message"])
        assert found and (float(found[1]), float(found[2])) == (limit - used, pair_bound(QUERY, long))
        assert pair_bound(QUERY, long) == 3 * WINDOW


def test_every_request_leaves_a_usage_row_of_its_route_and_counts_in_the_metrics(
        rerank_appliance: RunningAppliance, admin: httpx.Client) -> None:
    key_id, client = budgeted(rerank_appliance, admin, 1_000_000)
    with client:
        used = {path: rerank(client, path).json() for path in PATHS}
    tokens = {PATHS[0]: used[PATHS[0]]["data"]["usage"]["total_tokens"],
              PATHS[1]: used[PATHS[1]]["usage"]["total_tokens"],
              PATHS[2]: used[PATHS[2]]["meta"]["tokens"]["input_tokens"]}
    deadline = time.monotonic() + 30
    while True:  # the writer batches rows every 0.2 s
        rows = admin.get("/v1/accounting/usage", params={"key_id": key_id}).json()["data"]["items"]
        if len(rows) >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert {row["route"]: row["tokens_in"] for row in rows} == tokens
    assert {(row["model"], row["status_code"], row["tokens_out"]) for row in rows} == {(RERANK, 200, 0)}
    samples = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value for family in
               text_string_to_metric_families(httpx.get(rerank_appliance.url + "/metrics").text)
               for sample in family.samples}
    for path in PATHS:
        assert samples[("appliance_requests_total", (("model", RERANK), ("route", path), ("status", "200")))] >= 1
    assert samples[("appliance_usage_units_total", (("model", RERANK), ("unit", "tokens_in")))] >= sum(tokens.values())


def test_models_are_listed_by_the_rerank_modality(http: httpx.Client) -> None:
    def slugs(modality: str) -> list[str]:
        return [m["slug"] for m in http.get("/v1/models", params={"modality": modality}).json()["data"]["items"]]

    assert slugs("rerank") == [RERANK] and slugs("embedding") == [EMBED]


def line(custom_id: str, url: str, **body: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": url,
            "body": {"model": "rerank-v3.5", "query": QUERY, "documents": DOCS, **body}}


def test_scaigrid_batch_lines_rerank_as_live_requests_do(http: httpx.Client) -> None:
    live = pairs(data(rerank(http, top_n=2))["results"])
    lines = [line("top", "/v1/inference/rerank", top_n=2), line("zero", "/v1/inference/rerank", top_n=0),
             line("embedder", "/v1/inference/rerank", model=EMBED)]
    created = http.post("/v1/inference/batch", json={"input_file_base64": b64(lines)})
    assert created.status_code == 200, created.text
    done = wait_batch(http, created.json()["data"]["id"])
    assert done["request_counts"] == {"total": 3, "completed": 1, "failed": 2}
    [output] = read_lines(done["output_file_url"])
    assert output["custom_id"] == "top" and pairs(output["response"]["body"]["results"]) == live
    errors = {e["custom_id"]: e["error"] for e in read_lines(done["error_file_url"])}
    assert errors["zero"]["code"] == "VALIDATION_ERROR" and "top_n" in errors["zero"]["message"]
    assert errors["embedder"]["code"] == "VALIDATION_ERROR" and "model" in errors["embedder"]["message"]


def test_openai_batches_take_rerank_lines_at_v1_rerank(rerank_appliance: RunningAppliance, key: str,
                                                       http: httpx.Client) -> None:
    live = pairs(data(rerank(http, return_documents=True))["results"])
    client = openai.OpenAI(base_url=f"{rerank_appliance.url}/oai/v1", api_key=key, max_retries=0)
    uploaded = client.files.create(file=("rerank.jsonl", jsonl([line(f"r{n}", "/v1/rerank", return_documents=True)
                                                                for n in range(3)])), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/rerank",  # type: ignore[arg-type]
                                  completion_window="24h")
    deadline = time.monotonic() + 120
    while batch.status not in ("completed", "failed") and time.monotonic() < deadline:
        time.sleep(0.3)
        batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed" and batch.request_counts is not None and batch.request_counts.completed == 3
    assert batch.output_file_id is not None
    output = [json.loads(row) for row in client.files.content(batch.output_file_id).text.splitlines()]
    assert [row["custom_id"] for row in output] == ["r0", "r1", "r2"]
    for row in output:
        body = row["response"]["body"]
        assert pairs(body["results"]) == live and body["results"][0]["document"]["text"] in DOCS


def test_curl_gets_the_demos_example_answered(rerank_appliance: RunningAppliance, key: str) -> None:
    from appliance.cli.serve import DEMO_EXAMPLES

    [(_, path, body, _)] = [example for example in DEMO_EXAMPLES if example[0] == "rerank"]
    result = subprocess.run(["curl", "-s", f"{rerank_appliance.url}{path}", "-H", f"Authorization: Bearer {key}",
                             "-H", "Content-Type: application/json", "-d", json.dumps(body)],
                            capture_output=True, text=True, timeout=60, check=True)
    answer = json.loads(result.stdout)["data"]
    assert answer["model"] == RERANK and len(answer["results"]) == body["top_n"]
