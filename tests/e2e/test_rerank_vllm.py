"""A remote rerank backend that is vLLM's own server (CPU build): what the gateway sends it, and makes of its answers.

vLLM starts in about 30 s on two quiet cores (the module, 34 s in all).
vLLM's CPU attention takes no head of 16 dimensions, the tiny reranker's, so
this serves a random reranker of ms-marco-MiniLM-L6-v2's shape (heads of 32).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import tomli_w

from appliance.supervisor.vllm_launch import REPO_VLLM_PYTHON, VLLM_MODULE
from appliance.tiny_models import rerank as tiny_rerank
from tests.support.appliance import RunningAppliance, free_port, start_appliance
from tests.support.vllm import wait_http

pytestmark = pytest.mark.slow

SLUG = "acme/remote-rerank"
WINDOW = 512
QUERY = "What is the capital of France?"
DOCS = ["Berlin is the capital of Germany.", "Paris is the capital of France.", "France borders Spain."]


@contextlib.contextmanager
def vllm_reranker(model: Path, log: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(REPO_VLLM_PYTHON), "-m", VLLM_MODULE, "--model", str(model), "--served-model-name", "minilm-rerank",
             "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--enforce-eager",
             "--disable-uvicorn-access-log"], stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/v1/models", process, log, timeout=600)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)


@pytest.fixture(scope="module")
def vllm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    work = tmp_path_factory.mktemp("vllm-rerank")
    tiny_rerank.build(work / "model", **tiny_rerank.MINILM_SHAPE)
    with vllm_reranker(work / "model", work / "vllm.log") as base_url:
        yield base_url


@pytest.fixture(scope="module")
def appliance(vllm: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAppliance]:
    state = tmp_path_factory.mktemp("vllm-rerank-state")
    catalogue = state / "models.toml"
    catalogue.write_text(tomli_w.dumps({"model": [{"slug": SLUG, "modality": "rerank", "engine": "remote",
                                                   "url": [vllm], "remote_model": "minilm-rerank",
                                                   "context_window": WINDOW}]}))
    with start_appliance(catalogue, state) as running:
        yield running


@pytest.fixture(scope="module")
def http(appliance: RunningAppliance) -> Iterator[httpx.Client]:
    with appliance.client(appliance.create_key(), timeout=120) as client:
        yield client


def test_vllms_ranking_comes_through_in_the_workers_shape(vllm: str, http: httpx.Client) -> None:
    direct = httpx.post(f"{vllm}/rerank", json={"model": "minilm-rerank", "query": QUERY, "documents": DOCS},
                        timeout=60).json()
    assert all("document" in r for r in direct["results"])  # vLLM sends them whatever was asked
    objects = [{"text": doc} for doc in DOCS]  # vLLM itself refuses these: the gateway sends strings
    answer = http.post("/v1/inference/rerank", json={"model": SLUG, "query": QUERY, "documents": objects})
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    assert data["model"] == SLUG and all("document" not in r for r in data["results"])
    assert [(r["index"], round(r["relevance_score"], 5)) for r in data["results"]] == [
        (r["index"], round(r["relevance_score"], 5)) for r in direct["results"]]
    assert data["usage"]["total_tokens"] == direct["usage"]["total_tokens"]
    top = http.post("/oai/v2/rerank", json={"model": SLUG, "query": QUERY, "documents": DOCS, "top_n": 1}).json()
    assert [r["index"] for r in top["results"]] == [direct["results"][0]["index"]]


def test_an_over_long_pair_is_cut_by_vllm_unless_the_request_refuses_it(http: httpx.Client) -> None:
    long = "words that go on " * 400
    cut = http.post("/v1/inference/rerank", json={"model": SLUG, "query": QUERY, "documents": ["short", long]})
    assert cut.status_code == 200, cut.text  # truncate_prompt_tokens -1: vLLM cuts the pair to its window
    assert WINDOW < cut.json()["data"]["usage"]["total_tokens"] <= WINDOW + 64
    refused = http.post("/v1/inference/rerank", json={"model": SLUG, "query": QUERY, "documents": ["short", long],
                                                      "truncate": "NONE"})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "VALIDATION_ERROR", refused.text
    error = refused.json()["error"]
    assert error["details"][0]["field"] == "documents" and "maximum context length" in error["message"]


def test_cohere_max_tokens_per_doc_reaches_vllm(http: httpx.Client) -> None:
    def tokens(**extra: object) -> int:
        answer = http.post("/oai/v2/rerank", json={"model": SLUG, "query": QUERY,
                                                   "documents": ["a long document " * 20], **extra})
        assert answer.status_code == 200, answer.text
        return int(answer.json()["meta"]["tokens"]["input_tokens"])

    assert tokens(max_tokens_per_doc=4) < tokens()
