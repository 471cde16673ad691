"""POST /v1/inference/embed end to end: real gateway, real sentence-transformers worker."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from tests.support.appliance import RunningAppliance

EMBED = "openai/text-embedding-3-small"


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
    assert "maximum context length is 256 tokens" in error["message"] and "302 tokens" in error["message"]
    with embed_appliance.client(key) as client:  # OpenAI's code for it, never a silently truncated vector
        openai = client.post("/oai/v1/embeddings", json={"model": EMBED, "input": ["short", "food " * 300]})
    assert openai.status_code == 400
    assert openai.json()["error"] | {"message": ""} == {"message": "", "type": "invalid_request_error",
                                                        "param": "input[1]", "code": "context_length_exceeded"}


# "hello world" and "The quick brown fox" as cl100k_base token ids: what LangChain's OpenAIEmbeddings sends.
HELLO_WORLD = [15339, 1917]
QUICK_FOX = [791, 4062, 14198, 39935]


@pytest.mark.parametrize("path", ["/v1/inference/embed", "/oai/v1/embeddings"])
def test_token_ids_embed_as_the_text_they_encode(embed_appliance: RunningAppliance, key: str, path: str) -> None:
    with embed_appliance.client(key) as client:
        def vectors(**body: object) -> tuple[np.ndarray, dict[str, int]]:
            response = client.post(path, json={"model": "text-embedding-ada-002", **body})
            assert response.status_code == 200, response.text
            data = response.json()
            data = data["data"] if path.startswith("/v1/") else data
            return np.array([item["embedding"] for item in data["data"]]), data["usage"]

        as_ids, usage = vectors(input=[HELLO_WORLD, QUICK_FOX])
        as_text, text_usage = vectors(input=["hello world", "The quick brown fox"])
        assert as_ids.shape == (2, 1536) and np.allclose(as_ids, as_text, atol=1e-6)
        assert usage == text_usage  # the model's own tokens of the text, not the client's ids
        one, _ = vectors(input=HELLO_WORLD)  # a flat array is one input
        assert one.shape == (1, 1536) and np.allclose(one[0], as_ids[0], atol=1e-6)


BAD_INPUTS = [
    ([[15339, 100300]], "input[0][1]"),  # past the end of cl100k_base
    ([HELLO_WORLD, [791, 100256]], "input[1][1]"),  # a hole in its vocabulary
    ([[1, -5]], "input[0][1]"),
    ([[[1, 2]]], "input[0][0]"),  # one level too deep
    (["a", [1, 2]], "input[1]"),  # strings and ids mixed
    ([[]], "input[0]"),
    ([], "input"),
    ("", "input[0]"),
]


@pytest.mark.parametrize(("bad", "field"), BAD_INPUTS, ids=[field for _bad, field in BAD_INPUTS])
def test_bad_inputs_are_refused_naming_the_input(embed_appliance: RunningAppliance, key: str, bad: object,
                                                 field: str) -> None:
    with embed_appliance.client(key) as client:
        scaigrid = client.post("/v1/inference/embed", json={"model": EMBED, "input": bad})
        openai = client.post("/oai/v1/embeddings", json={"model": EMBED, "input": bad})
    assert scaigrid.status_code == 422 and scaigrid.json()["error"]["code"] == "VALIDATION_ERROR", scaigrid.text
    assert scaigrid.json()["error"]["details"][0]["field"] == field
    assert openai.status_code == 400 and openai.json()["error"]["param"] == field, openai.text
    assert openai.json()["error"]["type"] == "invalid_request_error"


def test_batch_lines_take_token_ids_too(embed_appliance: RunningAppliance, key: str) -> None:
    from tests.batch.helpers import b64, read_lines, wait_batch

    lines = [{"custom_id": "ids", "method": "POST", "url": "/v1/inference/embed",
              "body": {"model": EMBED, "input": [HELLO_WORLD]}},
             {"custom_id": "text", "method": "POST", "url": "/v1/inference/embed",
              "body": {"model": EMBED, "input": "hello world"}},
             {"custom_id": "bad", "method": "POST", "url": "/v1/inference/embed",
              "body": {"model": EMBED, "input": [[100300]]}}]
    with embed_appliance.client(key) as client:
        created = client.post("/v1/inference/batch", json={"input_file_base64": b64(lines)})
        assert created.status_code == 200, created.text
        batch = wait_batch(client, created.json()["data"]["id"])
    by_id = {line["custom_id"]: line for line in read_lines(batch["output_file_url"])}
    vectors = {name: by_id[name]["response"]["body"]["data"][0]["embedding"] for name in ("ids", "text")}
    assert np.allclose(vectors["ids"], vectors["text"], atol=1e-6)
    failed = {line["custom_id"]: line for line in read_lines(batch["error_file_url"])}
    assert "input[0][0]" in failed["bad"]["error"]["message"]


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
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="openai/text-embedding-3-small", input=[])
    assert caught.value.body["param"] == "input"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="acme/none", input="x")
