"""Chat and generate end to end: real gateway, real vLLM (CPU build) and the transformers chat worker.

One appliance serves both tiny chat models for the whole module (a vLLM start
costs ≈ 25 s); the test that kills vLLM mid-stream runs last.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import psutil
import pytest
import tomli_w

from appliance.config import Settings
from appliance.supervisor.vllm_launch import VLLM_MODULE
from appliance.supervisor.local_backend import socket_file
from tests.batch.helpers import b64, wait_batch
from tests.support.appliance import RunningAppliance, start_appliance
from tests.support.processes import descendants, engine_process

VLLM = "scailabs/poolnoodle-omni"
HF = "scailabs/tiny-chat"
MAX_OUTPUT = 1536  # the test catalogue's cap for the vLLM model (the tiny catalogue has 512)

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city for some days.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "enum": ["Paris", "Oslo"]},
                           "days": {"type": "integer", "minimum": 1, "maximum": 7}},
            "required": ["city", "days"],
            "additionalProperties": False,
        },
    },
}
NOOP = {"type": "function", "function": {"name": "noop", "parameters": {"type": "object", "properties": {}}}}
HI = [{"role": "user", "content": "Hello, how are you today?"}]


def weather_arguments_valid(arguments: str) -> bool:
    """The WEATHER schema, checked by hand (no jsonschema in the environment)."""
    value = json.loads(arguments)
    return (isinstance(value, dict) and set(value) == {"city", "days"} and value["city"] in ("Paris", "Oslo")
            and isinstance(value["days"], int) and 1 <= value["days"] <= 7)


@pytest.fixture(scope="module")
def chat_appliance(tiny_catalogue: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAppliance]:
    state = tmp_path_factory.mktemp("chat-state")
    models = []
    for table in tomllib.loads(tiny_catalogue.read_text())["model"]:
        if table["slug"] in (VLLM, HF):
            table = {**table, "path": str((tiny_catalogue.parent / table["path"]).resolve()), "load": "startup"}
            if table["slug"] == VLLM:  # on demand: the first request sees vLLM's start-up
                table.update(max_output_tokens=MAX_OUTPUT, load="on-demand")
            models.append(table)
    catalogue = state / "models.toml"
    catalogue.write_text(tomli_w.dumps({"model": models}))
    with start_appliance(catalogue, state) as running:
        yield running


@pytest.fixture(scope="module")
def first_answer(chat_appliance: RunningAppliance) -> httpx.Response:
    """The answer to the first chat of the module, sent while vLLM starts."""
    with chat_appliance.client(chat_appliance.create_key(), timeout=120) as http:
        return http.post("/v1/inference/chat", json={"model": VLLM, "messages": HI, "max_tokens": 3})


@pytest.fixture(scope="module")
def client(chat_appliance: RunningAppliance, first_answer: httpx.Response) -> Iterator[httpx.Client]:
    with chat_appliance.client(chat_appliance.create_key(), timeout=120) as http:
        wait_until_answering(http, VLLM)
        yield http


def test_vllm_start_up_is_model_unavailable_with_retry_after(first_answer: httpx.Response) -> None:
    assert first_answer.status_code == 503, first_answer.text
    error = first_answer.json()["error"]
    assert error["code"] == "MODEL_UNAVAILABLE" and "loading" in error["message"]
    assert error["retry_after"] >= 1 and first_answer.headers["retry-after"] == str(error["retry_after"])


def chat(client: httpx.Client, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/inference/chat", json={"model": VLLM, "messages": HI, **body})
    assert response.status_code == 200, response.text
    return response.json()["data"]


def sse_frames(response: httpx.Response) -> list[bytes]:
    raw = response.read()
    assert raw.endswith(b"\n\n"), raw[-200:]
    return [frame for frame in raw.split(b"\n\n")[:-1]]


def stream(client: httpx.Client, path: str, body: dict[str, Any]) -> tuple[httpx.Response, list[bytes]]:
    with client.stream("POST", path, json={**body, "stream": True}) as response:
        assert response.status_code == 200, response.read()
        return response, sse_frames(response)


def chunks(frames: list[bytes]) -> list[dict[str, Any]]:
    assert frames[-1] == b"data: [DONE]"
    return [json.loads(frame.removeprefix(b"data: ")) for frame in frames[:-1]]


def streamed_chat(client: httpx.Client, **body: Any) -> tuple[str, list[dict[str, Any]], str | None]:
    """Content, tool calls (arguments joined) and finish reason of a streamed chat."""
    _response, frames = stream(client, "/v1/inference/chat", {"model": VLLM, "messages": HI, **body})
    content, calls, finish = "", {}, None
    for chunk in chunks(frames):
        for choice in chunk["choices"]:
            delta = choice["delta"]
            content += delta.get("content") or ""
            for call in delta.get("tool_calls") or []:
                slot = calls.setdefault(call["index"], {"name": "", "arguments": ""})
                slot["name"] += (call.get("function") or {}).get("name") or ""
                slot["arguments"] += (call.get("function") or {}).get("arguments") or ""
            finish = choice.get("finish_reason") or finish
    return content, [calls[index] for index in sorted(calls)], finish


# --- the seeds' examples and the shapes ---------------------------------------------------


def test_the_seed_generate_example_runs_verbatim(client: httpx.Client) -> None:
    response = client.post("/v1/inference/generate", json={
        "prompt": "Once upon a time",
        "model": "scailabs/poolnoodle-omni",
        "max_tokens": 200,
        "temperature": 0.8,
        "stop": ["THE END"],
        "seed": 42,
    })
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok" and body["meta"]["request_id"] == response.headers["x-scaigrid-request-id"]
    data = body["data"]
    assert data["object"] == "text_completion" and data["model"] == VLLM
    choice = data["choices"][0]
    assert choice["index"] == 0 and choice["text"] and choice["finish_reason"] in ("stop", "length")
    usage = data["usage"]
    assert 0 < usage["completion_tokens"] <= 200
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert response.headers["x-scaigrid-model"] == VLLM
    assert response.headers["x-scaigrid-backend"].startswith("vllm:")


def test_batch_lines_run_on_a_vllm_that_serves_live_requests_first(chat_appliance: RunningAppliance,
                                                                    client: httpx.Client) -> None:
    lines = [{"custom_id": f"b{n}", "method": "POST", "url": "/v1/inference/chat",
              "body": {"model": VLLM, "messages": HI, "max_tokens": 3}} for n in range(3)]
    created = client.post("/v1/inference/batch", json={"input_file_base64": b64(lines)})
    assert created.status_code == 200, created.text
    done = wait_batch(client, created.json()["data"]["id"])
    assert done["status"] == "completed" and done["request_counts"]["completed"] == 3, done
    # The lines went with priority 10 (tests/batch/test_batch_priority.py) to a vLLM scheduling by it:
    engine_log = (chat_appliance.state_dir / "logs" / f"{VLLM.replace('/', '--')}.log").read_text()
    assert "'scheduling_policy': 'priority'" in engine_log  # vLLM's own list of the flags it was given


def test_vllms_busy_polling_processes_run_at_nice_19_and_its_http_server_does_not(
        chat_appliance: RunningAppliance, client: httpx.Client) -> None:
    server = engine_process(chat_appliance.process.pid, VLLM_MODULE)
    pollers = [proc for proc in descendants(server.pid) if proc.name().startswith("VLLM::")]
    assert sorted(proc.name() for proc in pollers) == ["VLLM::EngineCore", "VLLM::Worker"]
    for proc in pollers:
        assert {os.getpriority(os.PRIO_PROCESS, thread.id) for thread in proc.threads()} == {19}, proc.name()
    assert server.nice() == 0
    assert "VLLM::EngineCore, VLLM::Worker run at nice 19" in chat_appliance.log()


def test_chat_answers_in_the_openai_shape_inside_the_envelope(client: httpx.Client) -> None:
    data = chat(client, max_tokens=12, seed=1)
    assert data["object"] == "chat.completion" and data["model"] == VLLM
    assert data["id"] and isinstance(data["created"], int)
    choice = data["choices"][0]
    assert choice["index"] == 0 and choice["message"]["role"] == "assistant"
    assert isinstance(choice["message"]["content"], str) and choice["message"]["content"]
    assert choice["finish_reason"] == "length"
    assert data["usage"]["completion_tokens"] == 12
    assert data["usage"]["total_tokens"] == data["usage"]["prompt_tokens"] + 12


def test_a_streamed_chat_is_sse_frames_byte_for_byte(client: httpx.Client) -> None:
    response, frames = stream(client, "/v1/inference/chat", {"model": VLLM, "messages": HI, "max_tokens": 5, "seed": 3,
                                                             "stream_options": {"include_usage": True}})
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-scaigrid-request-id"] and response.headers["x-scaigrid-model"] == VLLM
    assert all(frame.startswith(b"data: ") and b"\n" not in frame for frame in frames)
    parsed = chunks(frames)
    assert {chunk["object"] for chunk in parsed} == {"chat.completion.chunk"}
    assert len({chunk["id"] for chunk in parsed}) == 1
    assert parsed[0]["choices"][0]["delta"]["role"] == "assistant"
    assert parsed[-2]["choices"][0]["finish_reason"] == "length"
    assert any(chunk["choices"][0]["delta"].get("content") for chunk in parsed[:-1])
    assert parsed[-1]["choices"] == [] and parsed[-1]["usage"]["completion_tokens"] == 5  # include_usage


def test_streamed_chat_equals_the_whole_answer_for_the_same_seed(client: httpx.Client) -> None:
    whole = chat(client, max_tokens=40, seed=7, temperature=0.9)
    content, calls, finish = streamed_chat(client, max_tokens=40, seed=7, temperature=0.9)
    assert content == whole["choices"][0]["message"]["content"]
    assert finish == whole["choices"][0]["finish_reason"] and calls == []


def test_streamed_generate_equals_the_whole_answer(client: httpx.Client) -> None:
    body = {"model": VLLM, "prompt": "Once upon a time", "max_tokens": 30, "seed": 11}
    whole = client.post("/v1/inference/generate", json=body).json()["data"]
    _response, frames = stream(client, "/v1/inference/generate", body)
    parsed = chunks(frames)
    assert {chunk["object"] for chunk in parsed} == {"text_completion"}
    assert "".join(chunk["choices"][0]["text"] for chunk in parsed) == whole["choices"][0]["text"]


def test_the_same_seed_gives_the_same_answer_and_another_seed_another(client: httpx.Client) -> None:
    first = chat(client, max_tokens=20, seed=123, temperature=1.0)["choices"][0]["message"]["content"]
    again = chat(client, max_tokens=20, seed=123, temperature=1.0)["choices"][0]["message"]["content"]
    other = chat(client, max_tokens=20, seed=124, temperature=1.0)["choices"][0]["message"]["content"]
    assert first == again and first != other


def test_temperature_zero_is_greedy_and_repeatable(client: httpx.Client) -> None:
    first = chat(client, max_tokens=15, temperature=0)["choices"][0]["message"]["content"]
    assert chat(client, max_tokens=15, temperature=0, top_p=0.5)["choices"][0]["message"]["content"] == first


def test_a_tiny_top_p_keeps_only_the_likeliest_token(client: httpx.Client) -> None:
    greedy = chat(client, max_tokens=15, temperature=0)["choices"][0]["message"]["content"]
    for seed in (1, 2):
        nucleus = chat(client, max_tokens=15, temperature=1.0, top_p=1e-6, seed=seed)
        assert nucleus["choices"][0]["message"]["content"] == greedy


def test_a_stop_string_ends_the_answer_before_it(client: httpx.Client) -> None:
    free = chat(client, max_tokens=40, seed=5)["choices"][0]["message"]["content"]
    stop = free[10:13]
    assert len(stop) == 3
    stopped = chat(client, max_tokens=40, seed=5, stop=[stop, "never-seen"])
    assert stopped["choices"][0]["finish_reason"] == "stop"
    assert stopped["choices"][0]["message"]["content"] == free[:free.index(stop)]
    single = chat(client, max_tokens=40, seed=5, stop=stop)
    assert single["choices"][0]["message"]["content"] == free[:free.index(stop)]


def test_max_tokens_is_capped_at_the_models_max_output_tokens(client: httpx.Client) -> None:
    data = chat(client, max_tokens=MAX_OUTPUT + 400, seed=1)
    assert data["usage"]["completion_tokens"] == MAX_OUTPUT
    generated = client.post("/v1/inference/generate", json={"model": VLLM, "prompt": "Hi", "max_tokens": 4000})
    assert generated.json()["data"]["usage"]["completion_tokens"] == MAX_OUTPUT


def test_every_role_and_a_tool_result_are_accepted(client: httpx.Client) -> None:
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\", \"days\": 2}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"},
        {"role": "assistant", "content": "It is sunny."},
        {"role": "user", "content": "Thanks!"},
    ]
    data = chat(client, messages=messages, tools=[WEATHER], max_tokens=8, seed=2)
    assert data["choices"][0]["message"]["role"] == "assistant"
    assert data["usage"]["prompt_tokens"] > chat(client, max_tokens=1)["usage"]["prompt_tokens"]


# --- tools ---------------------------------------------------------------------------------


def test_a_named_tool_choice_returns_a_call_that_fits_the_schema(client: httpx.Client) -> None:
    named = {"type": "function", "function": {"name": "get_weather"}}
    for seed in (1, 2, 3):
        data = chat(client, tools=[WEATHER, NOOP], tool_choice=named, max_tokens=200, seed=seed)
        calls = data["choices"][0]["message"]["tool_calls"]
        assert len(calls) == 1 and calls[0]["type"] == "function" and calls[0]["id"]
        assert calls[0]["function"]["name"] == "get_weather"
        assert weather_arguments_valid(calls[0]["function"]["arguments"])


def test_streamed_tool_calls_equal_the_whole_answer(client: httpx.Client) -> None:
    named = {"type": "function", "function": {"name": "get_weather"}}
    whole = chat(client, tools=[WEATHER], tool_choice=named, max_tokens=200, seed=9)
    call = whole["choices"][0]["message"]["tool_calls"][0]["function"]
    _content, calls, finish = streamed_chat(client, tools=[WEATHER], tool_choice=named, max_tokens=200, seed=9)
    assert len(calls) == 1 and calls[0]["name"] == call["name"]
    assert json.loads(calls[0]["arguments"]) == json.loads(call["arguments"])
    assert finish == whole["choices"][0]["finish_reason"]


def test_required_tool_choice_returns_only_valid_calls(client: httpx.Client) -> None:
    data = chat(client, tools=[WEATHER, NOOP], tool_choice="required", parallel_tool_calls=False,
                max_tokens=300, seed=4)
    calls = data["choices"][0]["message"]["tool_calls"]
    assert calls
    for call in calls:
        name = call["function"]["name"]
        assert name in ("get_weather", "noop")
        if name == "get_weather":
            assert weather_arguments_valid(call["function"]["arguments"])
        else:
            assert json.loads(call["function"]["arguments"]) == {}


def test_tool_choice_none_and_auto_answer_in_text(client: httpx.Client) -> None:
    for choice in ("none", "auto"):
        message = chat(client, tools=[WEATHER], tool_choice=choice, max_tokens=10, seed=6)["choices"][0]["message"]
        assert message["content"] and not message.get("tool_calls")


# --- the client's mistakes are VALIDATION_ERRORs naming the field --------------------------

BAD_CHATS = [
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "tool", "content": "42"}]}, "messages[1].tool_call_id"),
    ({"temperature": 2.5}, "temperature"),
    ({"temperature": -0.1}, "temperature"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": -5}, "max_tokens"),
    ({"top_p": 0}, "top_p"),
    ({"stop": ""}, "stop"),
    ({"tools": [{"type": "function", "function": {"description": "no name"}}]}, "tools[0].function.name"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}]},
     "tools[0].function"),
    ({"tools": "get_weather"}, "tools"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "get_time"}}},
     "tool_choice.function.name"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tool_choice": "sometimes"}, "tool_choice"),
    ({"seed": "abc"}, "seed"),
    ({"stream": "maybe"}, "stream"),
]


@pytest.mark.parametrize(("change", "field"), BAD_CHATS, ids=[field for _change, field in BAD_CHATS])
def test_bad_chat_input_is_a_validation_error_naming_the_field(client: httpx.Client, change: dict[str, Any],
                                                                field: str) -> None:
    response = client.post("/v1/inference/chat", json={"model": VLLM, "messages": HI, **change})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert field in [detail["field"] for detail in error["details"]], error


def test_a_prompt_over_the_context_window_is_a_validation_error(client: httpx.Client) -> None:
    long_text = "hello world " * 3000
    for path, body, field in (
        ("/v1/inference/chat", {"messages": [{"role": "user", "content": long_text}]}, "messages"),
        ("/v1/inference/generate", {"prompt": long_text}, "prompt"),
    ):
        for streamed in (False, True):
            response = client.post(path, json={"model": VLLM, "max_tokens": 5, "stream": streamed, **body})
            assert response.status_code == 422, response.text
            error = response.json()["error"]
            assert error["code"] == "VALIDATION_ERROR" and error["details"][0]["field"] == field
            assert "maximum context length is 4096 tokens" in error["message"]
            assert f"your {field} resulted in at least 4097 tokens" in error["message"]  # what vLLM counted


def test_a_prompt_over_the_context_window_is_context_length_exceeded_on_the_openai_surface(
        client: httpx.Client) -> None:
    long_text = "hello world " * 3000
    for path, body, field in (
        ("/oai/v1/chat/completions", {"messages": [{"role": "user", "content": long_text}]}, "messages"),
        ("/oai/v1/completions", {"prompt": long_text}, "prompt"),
    ):
        for streamed in (False, True):
            response = client.post(path, json={"model": VLLM, "max_tokens": 5, "stream": streamed, **body})
            assert response.status_code == 400, response.text
            error = response.json()["error"]
            assert (error["type"], error["code"], error["param"]) == ("invalid_request_error",
                                                                      "context_length_exceeded", field)
            assert "maximum context length is 4096 tokens" in error["message"]
    # The transformers worker says it in OpenAI's words, with the completion it was asked for.
    response = client.post("/oai/v1/chat/completions", json={"model": HF, "max_tokens": 512, "messages": [
        {"role": "user", "content": "hello world " * 1000}]})
    error = response.json()["error"]
    assert response.status_code == 400 and error["code"] == "context_length_exceeded", error
    assert "in the messages, 512 in the completion" in error["message"]


def test_unknown_model_and_missing_fields(client: httpx.Client) -> None:
    response = client.post("/v1/inference/chat", json={"model": "nope/none", "messages": HI})
    assert response.status_code == 404 and response.json()["error"]["code"] == "MODEL_NOT_FOUND"
    response = client.post("/v1/inference/generate", json={"model": VLLM})
    assert response.status_code == 422 and response.json()["error"]["details"][0]["field"] == "prompt"
    response = client.post("/v1/inference/chat", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 422 and response.json()["error"]["code"] == "VALIDATION_ERROR"
    as_text = client.post("/v1/inference/chat", content=b'{"model": "x", "messages": []}',
                          headers={"Content-Type": "text/plain"})
    assert as_text.status_code == 422 and as_text.json()["error"]["details"][0]["field"] == "content-type"


def test_metadata_is_kept_in_the_log_not_sent_to_the_engine(client: httpx.Client,
                                                             chat_appliance: RunningAppliance) -> None:
    chat(client, max_tokens=2, metadata={"ticket": "T-4711-marker"})
    assert "T-4711-marker" in chat_appliance.log()


# --- the OpenAI SDK against /oai/v1 ----------------------------------------------------------


@pytest.fixture(scope="module")
def sdk(chat_appliance: RunningAppliance) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{chat_appliance.url}/oai/v1", api_key=chat_appliance.create_key(),
                         max_retries=0)


def test_the_openai_sdk_chats_streams_and_completes(sdk: openai.OpenAI) -> None:
    completion = sdk.chat.completions.create(model=VLLM, messages=HI, max_tokens=10, seed=8)  # type: ignore[arg-type]
    assert completion.choices[0].message.content and completion.usage and completion.usage.completion_tokens == 10
    pieces = sdk.chat.completions.create(model=VLLM, messages=HI, max_tokens=10, seed=8, stream=True)  # type: ignore[arg-type]
    assert "".join(chunk.choices[0].delta.content or "" for chunk in pieces if chunk.choices) == \
        completion.choices[0].message.content
    text = sdk.completions.create(model=VLLM, prompt="Once upon a time", max_tokens=5, seed=1)
    assert text.choices[0].text and text.usage and text.usage.completion_tokens == 5


def test_the_openai_sdk_gets_tool_calls_and_typed_errors(sdk: openai.OpenAI) -> None:
    completion = sdk.chat.completions.create(
        model=VLLM, messages=HI, tools=[WEATHER], max_tokens=200, seed=3,  # type: ignore[arg-type, list-item]
        tool_choice={"type": "function", "function": {"name": "get_weather"}})
    calls = completion.choices[0].message.tool_calls
    assert calls and weather_arguments_valid(calls[0].function.arguments)  # type: ignore[union-attr]
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model=VLLM, messages=HI, temperature=5)  # type: ignore[arg-type]
    assert caught.value.body["param"] == "temperature"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        sdk.chat.completions.create(model="nope/none", messages=HI)  # type: ignore[arg-type]


# --- the transformers worker ---------------------------------------------------------------


def test_the_transformers_worker_chats_and_streams_the_same(client: httpx.Client) -> None:
    body = {"model": HF, "messages": HI, "max_tokens": 16, "seed": 5}
    whole = client.post("/v1/inference/chat", json=body)
    assert whole.status_code == 200, whole.text
    assert whole.headers["x-scaigrid-backend"].startswith("transformers:")
    data = whole.json()["data"]
    assert data["object"] == "chat.completion" and data["model"] == HF
    assert data["usage"]["completion_tokens"] == 16 and data["choices"][0]["finish_reason"] == "length"
    again = client.post("/v1/inference/chat", json=body).json()["data"]
    assert again["choices"][0]["message"]["content"] == data["choices"][0]["message"]["content"]
    _response, frames = stream(client, "/v1/inference/chat", {**body, "stream_options": {"include_usage": True}})
    parsed = chunks(frames)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in parsed if c["choices"]) == \
        data["choices"][0]["message"]["content"]
    assert parsed[-1]["usage"]["completion_tokens"] == 16


def test_the_transformers_worker_generates_and_stops(client: httpx.Client) -> None:
    body = {"model": HF, "prompt": "Once upon a time", "max_tokens": 30, "seed": 2}
    free = client.post("/v1/inference/generate", json=body).json()["data"]["choices"][0]["text"]
    stop = free[8:11]
    stopped = client.post("/v1/inference/generate", json={**body, "stop": [stop]}).json()["data"]["choices"][0]
    assert stopped["finish_reason"] == "stop" and stopped["text"] == free[:free.index(stop)]
    _response, frames = stream(client, "/v1/inference/generate", {**body, "stop": [stop]})
    assert "".join(chunk["choices"][0]["text"] for chunk in chunks(frames)) == stopped["text"]


def test_the_transformers_worker_refuses_what_it_cannot_do_as_validation_errors(client: httpx.Client) -> None:
    forced = client.post("/v1/inference/chat", json={"model": HF, "messages": HI, "tools": [WEATHER],
                                                     "tool_choice": "required"})
    assert forced.status_code == 422 and forced.json()["error"]["details"][0]["field"] == "tool_choice"
    long = client.post("/v1/inference/chat", json={"model": HF, "messages": [{"role": "user",
                                                                             "content": "hello world " * 1500}]})
    assert long.status_code == 422 and long.json()["error"]["details"][0]["field"] == "messages"
    auto = client.post("/v1/inference/chat", json={"model": HF, "messages": HI, "tools": [WEATHER],
                                                   "max_tokens": 5, "seed": 1})
    assert auto.status_code == 200 and auto.json()["data"]["choices"][0]["message"]["content"]
    for model in (HF, VLLM):  # token ids outside the vocabulary are the client's mistake, on either engine
        for ids in ([237, 34070, 5], [1, -488]):
            bad_ids = client.post("/v1/inference/generate", json={"model": model, "prompt": ids, "max_tokens": 2})
            assert bad_ids.status_code == 422, bad_ids.text
            assert bad_ids.json()["error"]["details"][0]["field"] == "prompt"


# --- concurrency, disconnects, crashes --------------------------------------------------------


def test_concurrent_streams_all_complete(client: httpx.Client) -> None:
    def one(seed: int) -> list[dict[str, Any]]:
        return chunks(stream(client, "/v1/inference/chat",
                             {"model": VLLM, "messages": HI, "max_tokens": 50, "seed": seed,
                              "stream_options": {"include_usage": True}})[1])

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(8)))
    for parsed in results:  # (under load vLLM may merge several tokens into one chunk)
        assert parsed[-2]["choices"][0]["finish_reason"] == "length"
        assert parsed[-1]["usage"]["completion_tokens"] == 50
    assert len({chunk[0]["id"] for chunk in results}) == 8


def vllm_socket(appliance: RunningAppliance) -> Path:
    return Settings(state_dir=appliance.state_dir).socket_dir / socket_file(VLLM)


def vllm_metric(appliance: RunningAppliance, name: str) -> float:
    """A counter of the vLLM server, read straight from its socket."""
    socket = vllm_socket(appliance)
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(socket)), base_url="http://vllm") as direct:
        text = direct.get("/metrics").text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_client_that_disconnects_aborts_the_generation_in_vllm(client: httpx.Client,
                                                                 chat_appliance: RunningAppliance) -> None:
    """Leave a long answer after its first frame: vLLM stops generating it (aborted, not finished).

    On a CPU box under heavy load vLLM may deliver a whole answer in one burst
    at its end, leaving nothing to abort; a few attempts keep the test about
    the gateway, not about the machine's load.
    """
    choices = 8  # a long job, so that it is still running when the client leaves
    body = {"model": VLLM, "messages": HI, "max_tokens": MAX_OUTPUT, "n": choices, "stream": True}
    outcomes = []
    for _attempt in range(5):
        generated = vllm_metric(chat_appliance, "vllm:generation_tokens_total")
        finished = vllm_metric(chat_appliance, "vllm:request_success_total")
        with client.stream("POST", "/v1/inference/chat", json=body) as response:
            assert response.status_code == 200
            next(response.iter_lines())  # the first frame, then leave
        deadline = time.monotonic() + 60
        while vllm_metric(chat_appliance, "vllm:num_requests_running") > 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert vllm_metric(chat_appliance, "vllm:num_requests_running") == 0
        outcomes.append((vllm_metric(chat_appliance, "vllm:generation_tokens_total") - generated,
                         vllm_metric(chat_appliance, "vllm:request_success_total") - finished))
        if outcomes[-1][0] < MAX_OUTPUT * choices:
            assert outcomes[-1][1] == 0  # aborted, not counted as finished
            return
    raise AssertionError(f"every abandoned stream ran to its end (tokens, finished): {outcomes}")


def vllm_server_pid(appliance: RunningAppliance) -> int:
    socket = str(vllm_socket(appliance))
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv[1:3] == [b"-m", VLLM_MODULE.encode()] and socket.encode() in argv:
                return int(entry.name)  # the server itself, not the reaper whose argv also names it
    raise AssertionError("no vLLM server process found")


def group_members(pgid: int) -> list[int]:
    """Live processes of the group (zombies are dead; a container's init may reap them late)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if os.getpgid(int(entry.name)) == pgid and state != "Z":
                    members.append(int(entry.name))
            except (OSError, IndexError):
                continue
    return members


def wait_until_answering(client: httpx.Client, model: str) -> bool:
    """Poll until ``model`` answers; True if it was MODEL_UNAVAILABLE (with retry_after) on the way."""  # noqa: D401
    deadline = time.monotonic() + 240
    seen_unavailable = False
    while time.monotonic() < deadline:
        response = client.post("/v1/inference/chat", json={"model": model, "messages": HI, "max_tokens": 3})
        if response.status_code == 200:
            return seen_unavailable
        error = response.json()["error"]
        if response.status_code == 502:  # sent to the server in the instant it died
            assert error["code"] == "BACKEND_ERROR"
            continue
        assert response.status_code == 503, response.text
        assert error["code"] == "MODEL_UNAVAILABLE" and error["retry_after"] >= 1
        assert response.headers["retry-after"] == str(error["retry_after"])
        seen_unavailable = True
        time.sleep(1)
    raise AssertionError(f"{model} did not come back")


def test_vllm_killed_mid_stream_ends_the_stream_with_an_error_frame_then_recovers(
        client: httpx.Client, chat_appliance: RunningAppliance) -> None:
    """Kill the vLLM server while it streams: an error frame, [DONE], no orphan, a restart.

    vLLM's CPU build sometimes delivers a whole answer in one burst at its end
    (its API process starved by the engine on two cores); then there was no
    stream left to break, and the test tries again once vLLM is back.
    """
    body = {"model": VLLM, "messages": HI, "max_tokens": MAX_OUTPUT, "n": 8, "stream": True}  # long: still running
    for _attempt in range(4):
        wait_until_answering(client, VLLM)
        pid = vllm_server_pid(chat_appliance)
        pgid = os.getpgid(pid)
        with client.stream("POST", "/v1/inference/chat", json=body) as response:
            lines = response.iter_lines()
            next(lines)
            os.kill(pid, signal.SIGKILL)
            rest = "\n".join(lines)
        if "event: error" in rest:
            break
    else:
        raise AssertionError("every stream was complete before its server was killed")
    assert rest.count("event: error\ndata: ") == 1
    error = json.loads(rest.split("event: error\ndata: ")[1].split("\n")[0])
    assert error["code"] == "BACKEND_ERROR" and "poolnoodle-omni" in error["message"]
    assert rest.rstrip().endswith("data: [DONE]")
    # the engine's whole process group went with it: no orphaned engine core
    deadline = time.monotonic() + 30
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert group_members(pgid) == []
    # meanwhile MODEL_UNAVAILABLE with retry_after; then the restarted worker answers
    assert wait_until_answering(client, VLLM)
    # the transformers model was not disturbed
    assert client.post("/v1/inference/chat", json={"model": HF, "messages": HI, "max_tokens": 2}).status_code == 200


def test_a_guard_killed_outright_leaves_no_engine_process_behind(client: httpx.Client,
                                                                  chat_appliance: RunningAppliance) -> None:
    """SIGKILL the reaper between the gateway and vLLM: the supervisor sweeps vLLM's whole group, then restarts."""
    wait_until_answering(client, VLLM)
    server = psutil.Process(vllm_server_pid(chat_appliance))
    pgid = os.getpgid(server.pid)
    assert len(group_members(pgid)) > 1  # the API server and its engine core
    server.parent().kill()
    deadline = time.monotonic() + 30
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert group_members(pgid) == []
    assert wait_until_answering(client, VLLM)


def test_stopping_the_appliance_leaves_no_engine_process(chat_appliance: RunningAppliance) -> None:
    pgid = os.getpgid(vllm_server_pid(chat_appliance))
    chat_appliance.stop()
    deadline = time.monotonic() + 30  # SIGKILL is delivered asynchronously
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert group_members(pgid) == []
