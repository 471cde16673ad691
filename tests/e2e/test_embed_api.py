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


def vectors_of(response) -> np.ndarray:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.text
    items = response.json()["data"]["data"]
    return np.array([
        np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4") if isinstance(item["embedding"], str)
        else item["embedding"] for item in items
    ])


def post(appliance: RunningAppliance, key: str, **body: object):  # type: ignore[no-untyped-def]
    with appliance.client(key) as client:
        return client.post("/v1/inference/embed", json={"model": "openai/text-embedding-3-small", **body})


def test_a_single_string_is_one_input(embed_appliance: RunningAppliance, key: str) -> None:
    single = vectors_of(post(embed_appliance, key, input="first text"))
    listed = vectors_of(post(embed_appliance, key, input=["first text"]))
    assert single.shape == (1, 1536) and np.allclose(single, listed)


def test_base64_is_little_endian_float32_of_the_same_vectors(embed_appliance: RunningAppliance, key: str) -> None:
    floats = vectors_of(post(embed_appliance, key, input=["a", "b"]))
    packed = post(embed_appliance, key, input=["a", "b"], encoding_format="base64")
    assert all(isinstance(item["embedding"], str) for item in packed.json()["data"]["data"])
    assert np.allclose(vectors_of(packed), floats, atol=1e-6)


def test_dimensions_truncate_and_renormalise(embed_appliance: RunningAppliance, key: str) -> None:
    full = vectors_of(post(embed_appliance, key, input=["a man is eating food"]))
    short = vectors_of(post(embed_appliance, key, input=["a man is eating food"], dimensions=256))
    assert short.shape == (1, 256)
    expected = full[:, :256] / np.linalg.norm(full[:, :256], axis=1, keepdims=True)
    assert np.allclose(short, expected, atol=1e-5)


def test_more_dimensions_than_the_model_has_is_a_validation_error(embed_appliance: RunningAppliance,
                                                                   key: str) -> None:
    response = post(embed_appliance, key, input="x", dimensions=3072)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR" and error["details"][0]["field"] == "dimensions"
    assert "1536" in error["message"]


def test_an_input_over_the_token_limit_is_named(embed_appliance: RunningAppliance, key: str) -> None:
    response = post(embed_appliance, key, input=["short", "food " * 300])
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR" and error["details"][0]["field"] == "input[1]"
    assert "at most 256 tokens" in error["message"]


def test_too_many_inputs_is_a_validation_error(embed_appliance: RunningAppliance, key: str) -> None:
    response = post(embed_appliance, key, input=["x"] * 2049)
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "input"


def test_concurrent_requests_each_get_their_own_vectors(embed_appliance: RunningAppliance, key: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    texts = [f"text number {i}" for i in range(24)]
    alone = {text: vectors_of(post(embed_appliance, key, input=text))[0] for text in texts[:4]}
    with ThreadPoolExecutor(12) as pool:
        together = list(pool.map(lambda t: vectors_of(post(embed_appliance, key, input=[t, "tail"])), texts))
    for text, vectors in zip(texts, together, strict=True):
        assert vectors.shape == (2, 1536)
        if text in alone:
            assert np.allclose(vectors[0], alone[text], atol=1e-5)


def test_the_openai_sdk_works_against_the_oai_surface(embed_appliance: RunningAppliance, key: str) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{embed_appliance.url}/oai/v1", api_key=key, max_retries=0)
    result = client.embeddings.create(model="openai/text-embedding-3-small", input=["hello", "world"],
                                      dimensions=64)
    assert [len(item.embedding) for item in result.data] == [64, 64]
    assert result.usage.prompt_tokens > 0
    assert [m.id for m in client.models.list()] == ["openai/text-embedding-3-small"]
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client.embeddings.create(model="openai/text-embedding-3-small", input=[])
    assert caught.value.body["param"] == "input"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="acme/none", input="x")
