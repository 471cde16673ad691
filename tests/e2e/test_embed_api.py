"""POST /v1/inference/embed end to end: real gateway, real sentence-transformers worker."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from tests.support.appliance import RunningAppliance


@pytest.fixture(scope="module")
def key(embed_appliance: RunningAppliance) -> str:
    return embed_appliance.create_key()


def test_the_seed_example_runs_verbatim(embed_appliance: RunningAppliance, key: str) -> None:
    with embed_appliance.client(key) as client:
        response = client.post("/v1/inference/embed", json={
            "model": "openai/text-embedding-3-small",
            "input": ["first text", "second text"],
            "dimensions": 1536,
        })
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert body["meta"]["request_id"] == response.headers["x-scaigrid-request-id"]
    data = body["data"]
    assert data["object"] == "list" and data["model"] == "openai/text-embedding-3-small"
    assert [item["index"] for item in data["data"]] == [0, 1]
    vectors = np.array([item["embedding"] for item in data["data"]])
    assert vectors.shape == (2, 1536)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert not np.allclose(vectors[0], vectors[1])
    assert data["usage"]["prompt_tokens"] == data["usage"]["total_tokens"] > 0
    assert response.headers["x-scaigrid-model"] == "openai/text-embedding-3-small"
    assert response.headers["x-scaigrid-backend"]
