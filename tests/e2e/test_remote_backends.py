"""Remote backends and replicas: a model served by other servers (a second appliance, a TCP `vllm serve`),
balanced over several backends, surviving dead ones, and failing clearly when a backend misbehaves.

Every server here is real and on loopback, except the one named a fake (tests/support/fake_backend.py)
for the faults no real engine produces on demand. The test that kills vLLM runs last in this file.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import tomli_w

from tests.conftest import catalogue_subset
from tests.support.appliance import RunningAppliance, free_port, start_appliance
from tests.support.audio import encode, tone
from tests.support.fake_backend import serve_fake
from tests.support.vllm import tiny_vllm_entry, vllm_on_tcp

pytestmark = pytest.mark.slow

EMBED, CHAT, IMAGE, STT, TTS = ("openai/text-embedding-3-small", "scailabs/tiny-chat", "stability/sd-xl",
                                "openai/whisper-1", "openai/tts-1")
UPSTREAM_KEY_ENV = "APPLIANCE_TEST_UPSTREAM_KEY"


@pytest.fixture(scope="module")
def upstream(tiny_catalogue: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAppliance]:
    """A second appliance serving every modality, reached over its /oai/v1 surface."""
    state = tmp_path_factory.mktemp("upstream")
    catalogue = catalogue_subset(tiny_catalogue, [EMBED, CHAT, IMAGE, STT, TTS], state / "models.toml",
                                 load="startup")
    with start_appliance(catalogue, state) as running:
        yield running


@pytest.fixture(scope="module")
def vllm_tcp(tiny_catalogue: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """vLLM's own OpenAI server (CPU build) on a TCP port: (base URL, pid)."""
    with vllm_on_tcp(tiny_vllm_entry(tiny_catalogue), CHAT, tmp_path_factory.mktemp("vllm-tcp") / "vllm.log") as v:
        yield v


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The FAKE misbehaving backend's origin."""
    with serve_fake(tmp_path_factory.mktemp("fake") / "fake.log") as origin:
        yield origin


@pytest.fixture(scope="module")
def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there


@pytest.fixture(scope="module")
def front(tiny_catalogue: Path, tmp_path_factory: pytest.TempPathFactory, upstream: RunningAppliance,
          vllm_tcp: tuple[str, int], fake: str, dead_url: str) -> Iterator[RunningAppliance]:
    """The appliance under test: remote models on the servers above, and a local model with two replicas."""
    state = tmp_path_factory.mktemp("front")
    local = tomllib.loads(catalogue_subset(tiny_catalogue, [EMBED], state / "local.toml").read_text())["model"][0]
    remote_of_upstream = f"{upstream.url}/oai/v1"

    def remote(slug: str, modality: str, urls: list[str], served: str, **more: object) -> dict[str, object]:
        return {"slug": slug, "modality": modality, "engine": "remote", "url": urls, "remote_model": served,
                **more}

    keyed = {"api_key_env": UPSTREAM_KEY_ENV}
    models = [
        {**local, "aliases": [], "replicas": 2},
        remote("remote/embed", "embedding", [remote_of_upstream, dead_url], EMBED, **keyed),
        remote("remote/chat", "chat", [remote_of_upstream], CHAT, context_window=2048, **keyed),
        remote("remote/image", "image", [remote_of_upstream], IMAGE, **keyed),
        remote("remote/whisper", "transcription", [remote_of_upstream], STT, **keyed),
        remote("remote/tts", "speech", [remote_of_upstream], TTS, **keyed),
        remote("remote/vllm-chat", "chat", [vllm_tcp[0]], CHAT, context_window=2048, max_output_tokens=512),
        remote("remote/chat-pair", "chat", [vllm_tcp[0], remote_of_upstream], CHAT, **keyed),
        remote("remote/down", "embedding", [dead_url], EMBED),
        *(remote(f"remote/{mode}", "chat", [f"{fake}/{mode}/v1"], "fake-model", timeout_s=2)
          for mode in ("garbage", "html", "unauthorized", "hang", "cut")),
    ]
    catalogue = state / "models.toml"
    catalogue.write_text(tomli_w.dumps({"settings": {"remote_probe_interval_s": 1.0}, "model": models}))
    env = {UPSTREAM_KEY_ENV: upstream.create_key()}
    with start_appliance(catalogue, state, env=env) as running:
        yield running


@pytest.fixture(scope="module")
def client(front: RunningAppliance) -> Iterator[httpx.Client]:
    with front.client(front.create_key(), timeout=120) as http:
        yield http


def backend_id(url: str) -> str:
    return "remote:" + url.split("://", 1)[1]


def model_item(client: httpx.Client, slug: str) -> dict[str, object]:
    response = client.get(f"/v1/models/{slug.replace('/', '%2F')}")
    assert response.status_code == 200, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


def wait_backends(client: httpx.Client, slug: str, active: int, timeout: float = 30) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        item = model_item(client, slug)
        if item["active_backend_count"] == active or time.monotonic() > deadline:
            return item
        time.sleep(0.2)


def test_every_modality_works_through_a_second_appliance(client: httpx.Client, upstream: RunningAppliance) -> None:
    upstream_id = backend_id(f"{upstream.url}/oai/v1")
    embed = client.post("/v1/inference/embed", json={"model": "remote/embed", "input": ["a", "b"], "dimensions": 64})
    assert embed.status_code == 200, embed.text
    assert [len(item["embedding"]) for item in embed.json()["data"]["data"]] == [64, 64]

    chat = client.post("/v1/inference/chat", json={"model": "remote/chat", "max_tokens": 8,
                                                   "messages": [{"role": "user", "content": "Hello"}]})
    assert chat.status_code == 200, chat.text
    assert chat.headers["x-scaigrid-backend"] == upstream_id and chat.headers["x-scaigrid-model"] == "remote/chat"
    assert chat.json()["data"]["model"] == "remote/chat"  # the client's name, not the upstream's
    generate = client.post("/v1/inference/generate", json={"model": "remote/chat", "prompt": "Once", "max_tokens": 8})
    assert generate.status_code == 200 and generate.json()["data"]["object"] == "text_completion"

    image = client.post("/v1/inference/images/generate", json={"model": "remote/image", "prompt": "a cat"})
    assert image.status_code == 200, image.text
    png = httpx.get(image.json()["data"]["data"][0]["url"], timeout=30)  # stored by the front appliance
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    b64 = client.post("/v1/inference/images/generate", json={"model": "remote/image", "prompt": "a cat",
                                                             "response_format": "b64_json"})
    assert base64.b64decode(b64.json()["data"]["data"][0]["b64_json"]).startswith(b"\x89PNG")

    audio = encode(tone(1.0), 16000, "wav")
    text = client.post("/v1/inference/audio/transcribe", data={"model": "remote/whisper", "response_format": "json"},
                       files={"file": ("a.wav", audio, "audio/wav")})
    assert text.status_code == 200, text.text
    assert isinstance(text.json()["data"]["text"], str)
    srt = client.post("/v1/inference/audio/transcribe", data={"model": "remote/whisper", "response_format": "srt"},
                      files={"file": ("a.wav", audio, "audio/wav")})
    assert srt.status_code == 200 and isinstance(srt.json()["data"]["text"], str)

    speech = client.post("/v1/inference/audio/synthesize", json={"model": "remote/tts", "input": "Hello there.",
                                                                 "voice": "alloy", "response_format": "wav"})
    assert speech.status_code == 200 and speech.content.startswith(b"RIFF")
    assert speech.headers["content-type"] == "audio/wav"


def test_a_dead_backend_costs_no_request_and_is_marked_down(client: httpx.Client, upstream: RunningAppliance,
                                                           dead_url: str) -> None:
    upstream_id = backend_id(f"{upstream.url}/oai/v1")
    for _ in range(12):
        response = client.post("/v1/inference/embed", json={"model": "remote/embed", "input": "x"})
        assert response.status_code == 200, response.text
        assert response.headers["x-scaigrid-backend"] == upstream_id
    item = wait_backends(client, "remote/embed", active=1)
    assert (item["active_backend_count"], item["total_backend_count"]) == (1, 2)
    health = {b["id"]: b["health_status"] for b in item["backends"]}  # type: ignore[attr-defined]
    assert health == {upstream_id: "healthy", backend_id(dead_url): "unhealthy"}


def test_the_openai_sdk_works_through_a_remote_backend(front: RunningAppliance, client: httpx.Client) -> None:
    sdk = openai.OpenAI(base_url=f"{front.url}/oai/v1", api_key=client.headers["authorization"].split()[1])
    vectors = sdk.embeddings.create(model="remote/embed", input=["one", "two"])
    assert len(vectors.data) == 2 and vectors.model == "remote/embed"
    assert sdk.models.retrieve("remote/embed").id == "remote/embed"  # ids with "/" resolve


def test_the_responses_api_runs_on_remote_chat_backends(front: RunningAppliance, client: httpx.Client) -> None:
    sdk = openai.OpenAI(base_url=f"{front.url}/oai/v1", api_key=client.headers["authorization"].split()[1],
                        max_retries=0)
    for model in ("remote/chat", "remote/vllm-chat"):  # another appliance's transformers worker; a `vllm serve`
        response = sdk.responses.create(model=model, input="Hello", max_output_tokens=8)
        assert response.model == model and response.output_text
        assert response.usage and response.usage.output_tokens == 8
        events = list(sdk.responses.create(model=model, input="Hello", max_output_tokens=8, stream=True))
        assert events[0].type == "response.created" and events[-1].type == "response.incomplete"
        assert events[-1].response.output_text  # type: ignore[union-attr]
        follow_up = sdk.responses.create(model=model, input="More", previous_response_id=response.id,
                                         max_output_tokens=4)
        assert follow_up.usage and follow_up.usage.input_tokens > response.usage.input_tokens


def test_streaming_and_tools_through_a_tcp_vllm(client: httpx.Client, vllm_tcp: tuple[str, int]) -> None:
    body = {"model": "remote/vllm-chat", "stream": True, "max_tokens": 16,
            "messages": [{"role": "user", "content": "Tell me a story"}]}
    with client.stream("POST", "/v1/inference/chat", json=body) as response:
        assert response.status_code == 200
        assert response.headers["x-scaigrid-backend"] == backend_id(vllm_tcp[0])
        frames = [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]
    assert frames[-1] == "[DONE]"
    chunks = [json.loads(frame) for frame in frames[:-1]]
    assert chunks and all(chunk["model"] == "remote/vllm-chat" for chunk in chunks)

    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    forced = client.post("/v1/inference/chat", json={
        "model": "remote/vllm-chat", "max_tokens": 200, "seed": 1, "tools": [tool],  # room for the whole call
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "messages": [{"role": "user", "content": "Weather in Paris?"}]})
    assert forced.status_code == 200, forced.text
    call = forced.json()["data"]["choices"][0]["message"]["tool_calls"][0]
    assert call["function"]["name"] == "get_weather" and "city" in json.loads(call["function"]["arguments"])


@pytest.mark.parametrize(("mode", "status", "code", "words"), [
    ("garbage", 502, "BACKEND_ERROR", "not a JSON object"),
    ("html", 502, "BACKEND_ERROR", "HTTP 502"),
    ("unauthorized", 502, "BACKEND_ERROR", "refused the appliance's credentials"),
    ("hang", 504, "BACKEND_TIMEOUT", "did not answer in time"),
])
def test_a_misbehaving_backend_is_a_clear_error_naming_it(client: httpx.Client, fake: str, mode: str, status: int,
                                                          code: str, words: str) -> None:
    response = client.post("/v1/inference/chat", json={"model": f"remote/{mode}", "max_tokens": 4,
                                                       "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and words in error["message"]
    assert backend_id(f"{fake}/{mode}/v1") in error["message"]
    assert "sgk_" not in error["message"]  # neither the appliance's key nor the backend's answer leaks
    assert response.headers["x-scaigrid-backend"] == backend_id(f"{fake}/{mode}/v1")


def test_a_stream_cut_by_the_backend_ends_in_an_error_frame(client: httpx.Client) -> None:
    body = {"model": "remote/cut", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with client.stream("POST", "/v1/inference/chat", json=body) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line]
    assert lines[0].startswith("data: ") and lines[-1] == "data: [DONE]"
    assert lines[-3] == "event: error" and json.loads(lines[-2].removeprefix("data: "))["code"] == "BACKEND_ERROR"


def test_with_every_backend_down_the_model_is_unavailable_with_retry_after(client: httpx.Client) -> None:
    response = client.post("/v1/inference/embed", json={"model": "remote/down", "input": "x"})
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "MODEL_UNAVAILABLE" and error["retry_after"] >= 1
    assert response.headers["retry-after"] == str(error["retry_after"])
    item = model_item(client, "remote/down")
    assert (item["active_backend_count"], item["total_backend_count"], item["health_status"]) == (0, 1, "unhealthy")


def test_two_local_replicas_share_the_load(client: httpx.Client) -> None:
    seen = set()
    for _ in range(8):
        response = client.post("/v1/inference/embed", json={"model": EMBED, "input": "x"})
        assert response.status_code == 200, response.text
        seen.add(response.headers["x-scaigrid-backend"])
    assert seen == {"sentence-transformers:openai_text-embedding-3-small#1",
                    "sentence-transformers:openai_text-embedding-3-small#2"}
    item = model_item(client, EMBED)
    assert (item["active_backend_count"], item["total_backend_count"]) == (2, 2)


def test_zz_a_backend_killed_mid_stream_fails_that_stream_and_the_next_request_goes_elsewhere(
        client: httpx.Client, vllm_tcp: tuple[str, int], upstream: RunningAppliance) -> None:
    """Runs last: it kills the TCP vLLM the other tests use."""
    vllm_id, upstream_id = backend_id(vllm_tcp[0]), backend_id(f"{upstream.url}/oai/v1")
    ask = {"model": "remote/chat-pair", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
    for _ in range(4):  # equal backends take turns: after the upstream's turn comes vLLM's
        if client.post("/v1/inference/chat", json=ask).headers["x-scaigrid-backend"] == upstream_id:
            break
    # Near the window: the tiny model must still be generating when the kill comes, on a slow day too.
    long = {**ask, "stream": True, "max_tokens": 2000, "ignore_eos": True}
    with client.stream("POST", "/v1/inference/chat", json=long) as response:
        assert response.status_code == 200 and response.headers["x-scaigrid-backend"] == vllm_id
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")
        os.killpg(vllm_tcp[1], signal.SIGKILL)
        rest = [line for line in lines if line]
    assert rest[-1] == "data: [DONE]" and rest[-3] == "event: error"
    assert json.loads(rest[-2].removeprefix("data: "))["code"] == "BACKEND_ERROR"
    for _ in range(4):
        after = client.post("/v1/inference/chat", json=ask)
        assert after.status_code == 200, after.text
        assert after.headers["x-scaigrid-backend"] == upstream_id
    item = wait_backends(client, "remote/chat-pair", active=1)
    assert (item["active_backend_count"], item["total_backend_count"]) == (1, 2)
