"""What every worker's routes share: OpenAI-shaped errors, with the retry hint a busy engine gives."""

from __future__ import annotations

import asyncio

import httpx

from appliance.catalogue import ModelEntry
from appliance.protocol.rerank import RerankRequest
from appliance.workers.server import HotRoutes, WorkerError, create_worker_app

ENTRY = ModelEntry(slug="acme/m", modality="rerank", engine="remote", url=("http://10.0.0.1/v1",))


def post(app: HotRoutes, path: str, body: bytes) -> httpx.Response:
    async def send() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://worker") as client:
            return await client.post(path, content=body)

    return asyncio.run(send())


def test_a_busy_engine_answers_429_with_retry_after_on_hot_and_framework_routes() -> None:
    app = HotRoutes(create_worker_app(ENTRY))

    @app.post("/hot")
    async def hot(_raw: bytes) -> bytes:
        raise WorkerError(429, "busy", error_type="rate_limit_error", retry_after=7)

    @app.app.post("/framework")  # type: ignore[attr-defined]
    async def framework() -> None:
        raise WorkerError(429, "busy", error_type="rate_limit_error", retry_after=3)

    for path, seconds in (("/hot", "7"), ("/framework", "3")):
        response = post(app, path, b"{}")
        assert response.status_code == 429 and response.headers["retry-after"] == seconds
        assert response.json()["error"] == {"message": "busy", "type": "rate_limit_error", "param": None, "code": None}


def test_an_invalid_body_names_its_field_with_the_validators_own_sentence() -> None:
    app = HotRoutes(create_worker_app(ENTRY))

    @app.post("/rerank")
    async def rerank(raw: bytes) -> bytes:
        RerankRequest.model_validate_json(raw)
        return b"{}"

    empty_query = post(app, "/rerank", b'{"model": "m", "query": "", "documents": ["a"]}').json()["error"]
    assert empty_query["param"] == "query" and empty_query["message"].startswith("query: ")
    no_documents = post(app, "/rerank", b'{"model": "m", "query": "q", "documents": []}').json()["error"]
    assert no_documents["message"] == "documents: the list is empty; send at least one document to rank"
