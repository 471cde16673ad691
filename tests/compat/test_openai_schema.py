"""Every kind of /oai/v1 answer validates against OpenAI's own published OpenAPI document (a real JSON-Schema
validator, the document's components as they are), and carries none of vLLM's own fields on either surface."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from tests.compat.conftest import CHAT, EMBED, IMAGES, SMALL, WEATHER, WHISPER, Box
from tests.support.audio import audio_file
from tests.support.openai_schema import component, errors, response_schema

HI = [{"role": "user", "content": "Hello"}]
FORCED = {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
          "max_tokens": 200, "seed": 3}
VLLM_ONLY = ("prompt_token_ids", "prompt_text", "token_ids", "kv_transfer_params", "stop_reason", "routed_experts",
             "prompt_logprobs", "service_tier")


@pytest.fixture(scope="module")
def client(box: Box) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=box.oai, headers={"Authorization": f"Bearer {box.key}"}, timeout=300) as http:
        yield http


def answer(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == response.headers["x-scaigrid-request-id"]
    return response.json()


def chunks(response: httpx.Response) -> list[Any]:
    assert response.status_code == 200, response.text
    frames = response.text.split("\n\n")
    assert frames[-2:] == ["data: [DONE]", ""], frames[-3:]
    return [json.loads(frame.removeprefix("data: ")) for frame in frames[:-2]]


def assert_valid(body: Any, schema: dict[str, Any]) -> None:
    problems = errors(body, schema)
    assert not problems, "\n".join(problems)
    text = json.dumps(body)
    assert not [key for key in VLLM_ONLY if f'"{key}"' in text], text[:500]


CHAT_SCHEMA = response_schema("/chat/completions", "post")
CHUNK_SCHEMA = response_schema("/chat/completions", "post", "text/event-stream")


@pytest.mark.parametrize("extra", [{"max_tokens": 5}, {"max_tokens": 3, "logprobs": True, "top_logprobs": 2}, FORCED],
                         ids=["plain", "logprobs", "tools"])
def test_chat_completions(client: httpx.Client, extra: dict[str, Any]) -> None:
    body = answer(client.post("/chat/completions", json={"model": CHAT, "messages": HI, **extra}))
    assert_valid(body, CHAT_SCHEMA)
    if "tools" in extra:
        assert body["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"


@pytest.mark.parametrize("extra", [{"max_tokens": 3, "stream_options": {"include_usage": True}},
                                   {"max_tokens": 3, "logprobs": True, "top_logprobs": 2}, FORCED],
                         ids=["plain-with-usage", "logprobs", "tools"])
def test_chat_stream_chunks(client: httpx.Client, extra: dict[str, Any]) -> None:
    parsed = chunks(client.post("/chat/completions", json={"model": CHAT, "messages": HI, "stream": True, **extra}))
    for chunk in parsed:
        assert_valid(chunk, CHUNK_SCHEMA)
    if "logprobs" in extra:
        assert any(chunk["choices"] and chunk["choices"][0]["logprobs"] for chunk in parsed)
    if "tools" in extra:
        assert any(chunk["choices"] and chunk["choices"][0]["delta"].get("tool_calls") for chunk in parsed)


def test_completions_whole_and_streamed(client: httpx.Client) -> None:
    schema = response_schema("/completions", "post")
    body = {"model": CHAT, "prompt": "Once upon a time", "max_tokens": 3}
    assert_valid(answer(client.post("/completions", json={**body, "logprobs": 2})), schema)
    for chunk in chunks(client.post("/completions", json={**body, "stream": True})):
        # OpenAI's own streamed completions carry finish_reason null until the last chunk, which the document's
        # shared schema does not allow: everything else is checked.
        for choice in chunk["choices"]:
            choice["finish_reason"] = choice["finish_reason"] or "length"
        assert_valid(chunk, schema)


@pytest.mark.parametrize("extra", [{}, {"encoding_format": "base64"}, {"input": [[15339, 1917], [791, 4062]]}],
                         ids=["float", "base64", "token-ids"])
def test_embeddings(client: httpx.Client, extra: dict[str, Any]) -> None:
    body = answer(client.post("/embeddings", json={"model": EMBED, "input": ["a", "b"], **extra}))
    if extra.get("encoding_format") == "base64":
        # The document types the vector as floats only; a base64 answer (openai-python's default) carries the
        # same vector as a string of little-endian float32, OpenAI's as this one: validated with it decoded.
        for item in body["data"]:
            item["embedding"] = np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4").tolist()
            assert len(item["embedding"]) == 1536
    assert_valid(body, response_schema("/embeddings", "post"))


@pytest.mark.parametrize("response_format", ["url", "b64_json"])
def test_images(client: httpx.Client, response_format: str) -> None:
    body = answer(client.post("/images/generations", json={"model": IMAGES, "prompt": "a lake", "size": SMALL,
                                                           "response_format": response_format}))
    assert_valid(body, response_schema("/images/generations", "post"))
    assert set(body["data"][0]) == {response_format, "revised_prompt"}  # the other one left out, not null


def test_transcriptions_in_each_format(client: httpx.Client) -> None:
    clip = audio_file(1.0)

    def transcribe(response_format: str, **more: Any) -> httpx.Response:
        return client.post("/audio/transcriptions", data={"model": WHISPER, "response_format": response_format,
                                                          **more}, files={"file": ("clip.wav", clip, "audio/wav")})

    assert_valid(answer(transcribe("json")), response_schema("/audio/transcriptions", "post"))
    # A verbose answer is also a valid plain one, so the path's oneOf cannot hold for it (nor for OpenAI's own):
    # it is checked against its own component.
    verbose = answer(transcribe("verbose_json", **{"timestamp_granularities[]": ["word", "segment"]}))
    assert_valid(verbose, component("CreateTranscriptionResponseVerboseJson"))
    for text_format, media_type in (("text", "text/plain"), ("srt", "application/x-subrip"), ("vtt", "text/vtt")):
        response = transcribe(text_format)  # the file itself, as OpenAI sends it (the SDKs hand it over as a string)
        assert response.status_code == 200 and response.headers["content-type"].startswith(media_type)


def test_models(client: httpx.Client) -> None:
    assert_valid(answer(client.get("/models")), response_schema("/models", "get"))
    assert_valid(answer(client.get(f"/models/{EMBED}")), response_schema("/models/{model}", "get"))


def test_files_and_batches(box: Box, client: httpx.Client) -> None:
    with httpx.Client(base_url=box.oai, headers={"Authorization": f"Bearer {box.appliance.create_key()}"}) as fresh:
        assert_valid(answer(fresh.get("/files")), response_schema("/files", "get"))  # an empty page
    line = json.dumps({"custom_id": "1", "method": "POST", "url": "/v1/embeddings",
                       "body": {"model": EMBED, "input": [[15339, 1917]]}}).encode()
    created = answer(client.post("/files", data={"purpose": "batch"},
                                 files={"file": ("in.jsonl", line + b"\n", "application/jsonl")}))
    assert_valid(created, response_schema("/files", "post"))
    assert_valid(answer(client.get(f"/files/{created['id']}")), response_schema("/files/{file_id}", "get"))
    assert_valid(answer(client.get("/files")), response_schema("/files", "get"))
    batch = answer(client.post("/batches", json={"input_file_id": created["id"], "endpoint": "/v1/embeddings",
                                                 "completion_window": "24h"}))
    assert_valid(batch, response_schema("/batches", "post"))
    for _ in range(120):
        batch = answer(client.get(f"/batches/{batch['id']}"))
        if batch["status"] == "completed":
            break
        time.sleep(0.5)
    assert batch["status"] == "completed" and batch["request_counts"]["completed"] == 1, batch
    assert_valid(batch, response_schema("/batches/{batch_id}", "get"))
    assert_valid(answer(client.get("/batches")), response_schema("/batches", "get"))
    output = client.get(f"/files/{batch['output_file_id']}/content").text
    assert json.loads(output)["response"]["status_code"] == 200
    other = answer(client.post("/batches", json={"input_file_id": created["id"], "endpoint": "/v1/embeddings"}))
    cancelled = answer(client.post(f"/batches/{other['id']}/cancel"))
    assert_valid(cancelled, response_schema("/batches/{batch_id}/cancel", "post"))


ERRORS: list[tuple[str, Callable[[httpx.Client], httpx.Response], int]] = [
    ("invalid", lambda c: c.post("/chat/completions", json={"model": CHAT, "messages": HI, "temperature": 5}), 400),
    ("context", lambda c: c.post("/chat/completions", json={"model": CHAT, "max_tokens": 3, "messages": [
        {"role": "user", "content": "hello world " * 1500}]}), 400),
    ("bad-token-id", lambda c: c.post("/embeddings", json={"model": EMBED, "input": [[1, 100300]]}), 400),
    ("no-model", lambda c: c.post("/embeddings", json={"model": "nope", "input": "x"}), 404),
    ("no-route", lambda c: c.get("/nowhere"), 404),
    ("no-key", lambda c: c.get("/models", headers={"Authorization": ""}), 401),
    ("bad-key", lambda c: c.get("/models", headers={"Authorization": "Bearer sgk_wrong"}), 401),
    ("method", lambda c: c.put("/models"), 405),
]


@pytest.mark.parametrize(("case", "request_of", "status"), ERRORS, ids=[case for case, _r, _s in ERRORS])
def test_errors(client: httpx.Client, case: str, request_of: Callable[[httpx.Client], httpx.Response],
                status: int) -> None:
    response = request_of(client)
    assert response.status_code == status, response.text
    assert response.headers["x-request-id"] == response.headers["x-scaigrid-request-id"]
    assert_valid(response.json(), component("ErrorResponse"))


def test_the_v1_surface_strips_the_same_fields(box: Box) -> None:
    with httpx.Client(base_url=box.appliance.url, headers={"Authorization": f"Bearer {box.key}"}, timeout=120) as v1:
        data = answer(v1.post("/v1/inference/chat", json={"model": CHAT, "messages": HI, "max_tokens": 3}))["data"]
        assert_valid(data, CHAT_SCHEMA)
        streamed = chunks(v1.post("/v1/inference/generate", json={"model": CHAT, "prompt": "Once", "max_tokens": 3,
                                                                  "stream": True}))
        assert not [key for key in VLLM_ONLY if f'"{key}"' in json.dumps(streamed)]
