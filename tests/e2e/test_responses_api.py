"""The Responses API end to end, through the clients that speak it: the openai SDK, the OpenAI Agents SDK and
LangChain, against a real gateway on the tiny vLLM model (grammar-constrained tool calls, hermes) and the
transformers chat worker. Every Response object, item list and streamed event is checked against OpenAI's own
OpenAPI document (tests/support/openai_schema.py).

One appliance serves the module (vLLM starts once, ≈ 75 s on a 2-core box).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import httpx
import openai
import pytest
from pydantic import BaseModel

from tests.batch.helpers import jsonl, wait_batch
from tests.conftest import catalogue_subset
from tests.support.appliance import RunningAppliance, start_appliance
from tests.support.openai_schema import conforms, conforms_event

VLLM = "scailabs/poolnoodle-omni"
HF = "scailabs/tiny-chat"
WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Oslo"]}},
                          "required": ["city"], "additionalProperties": False}, "strict": True}
FORCE_WEATHER = {"type": "function", "name": "get_weather"}


@pytest.fixture(scope="module")
def appliance(tiny_catalogue: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAppliance]:
    state = tmp_path_factory.mktemp("responses-state")
    catalogue = catalogue_subset(tiny_catalogue, [VLLM, HF], state / "models.toml", load="startup")
    with start_appliance(catalogue, state, env={"APPLIANCE_RESPONSES_STALE_S": "3"}) as running:
        yield running


@pytest.fixture(scope="module")
def key(appliance: RunningAppliance) -> str:
    return appliance.create_key()


@pytest.fixture(scope="module")
def sdk(appliance: RunningAppliance, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{appliance.url}/oai/v1", api_key=key, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def http(appliance: RunningAppliance, key: str) -> Iterator[httpx.Client]:
    with appliance.client(key, timeout=120) as client:
        yield client


def raw(http: httpx.Client, **body: Any) -> dict[str, Any]:
    """POST /oai/v1/responses; the Response, checked against OpenAI's document."""
    answer = http.post("/oai/v1/responses", json={"model": VLLM, "max_output_tokens": 16, **body})
    assert answer.status_code == 200, answer.text
    response = answer.json()
    conforms("Response", response)
    return response  # type: ignore[no-any-return]


def events_of(answer: httpx.Response) -> list[dict[str, Any]]:
    """The events of an event stream, each checked: ``event:`` is its type, numbered from 0 in order (or on from
    where it was picked up), and valid for OpenAI's document."""
    events = []
    for frame in answer.read().split(b"\n\n"):
        if not frame.strip():
            continue
        head, data = frame.split(b"\n", 1)
        event = json.loads(data.removeprefix(b"data: "))
        assert head == b"event: " + event["type"].encode(), frame
        conforms_event(event)
        events.append(event)
    numbers = [event["sequence_number"] for event in events]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))) if numbers else True
    return events


def streamed(http: httpx.Client, **body: Any) -> list[dict[str, Any]]:
    with http.stream("POST", "/oai/v1/responses", json={"model": VLLM, "max_output_tokens": 16, "stream": True,
                                                        **body}) as answer:
        assert answer.status_code == 200, answer.read()
        assert answer.headers["content-type"].startswith("text/event-stream")
        return events_of(answer)


def error_of(answer: httpx.Response, status: int, param: str) -> str:
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert set(answer.json()) == {"error"} and error["param"] == param, error
    assert error["type"] == "invalid_request_error"  # OpenAI's type for a bad request and an unknown id alike
    return str(error["message"])


# --- the openai SDK ------------------------------------------------------------------------------------------------


def test_a_plain_response_answers_stores_and_lists_its_input(sdk: openai.OpenAI, http: httpx.Client) -> None:
    response = sdk.responses.create(model=VLLM, input="Hello, who are you?", instructions="Be brief.",
                                    max_output_tokens=16, metadata={"ticket": "T-1"}, extra_body={"seed": 1})
    assert response.object == "response" and response.id.startswith("resp_") and response.model == VLLM
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"  # type: ignore[union-attr]
    assert response.output_text and response.output[0].type == "message"
    assert response.usage and response.usage.output_tokens == 16 and response.usage.input_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + 16
    assert response.instructions == "Be brief." and response.metadata == {"ticket": "T-1"} and response.store
    stored = http.get(f"/oai/v1/responses/{response.id}")
    assert stored.status_code == 200
    conforms("Response", stored.json())
    assert sdk.responses.retrieve(response.id).output_text == response.output_text
    items = sdk.responses.input_items.list(response.id)
    assert [(item.type, item.role) for item in items.data] == [("message", "user")]  # type: ignore[union-attr]
    listed = http.get(f"/oai/v1/responses/{response.id}/input_items").json()
    conforms("ResponseItemList", listed)
    assert listed["data"][0]["content"] == [{"type": "input_text", "text": "Hello, who are you?"}]


def test_the_same_seed_streams_what_it_answers_whole_as_the_documented_events(sdk: openai.OpenAI,
                                                                             http: httpx.Client) -> None:
    whole = raw(http, input="Tell me a story.", seed=5, max_output_tokens=24, temperature=1.0)
    events = streamed(http, input="Tell me a story.", seed=5, max_output_tokens=24, temperature=1.0)
    kinds = [event["type"] for event in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert set(kinds[4:-4]) == {"response.output_text.delta"} and events[0]["sequence_number"] == 0
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.incomplete"]
    text = "".join(event["delta"] for event in events if event["type"] == "response.output_text.delta")
    final = events[-1]["response"]
    assert text == whole["output"][0]["content"][0]["text"] == final["output"][0]["content"][0]["text"]
    assert final["usage"] == {**whole["usage"]} and final["id"] != whole["id"]
    typed = list(sdk.responses.create(model=VLLM, input="Tell me a story.", max_output_tokens=24, temperature=1.0,
                                      stream=True, extra_body={"seed": 5}))
    assert [event.type for event in typed][:4] == kinds[:4] and typed[-1].type == "response.incomplete"
    assert typed[-1].response.output_text == text  # type: ignore[union-attr]  # the SDK's typed events
    assert sdk.responses.retrieve(final["id"]).output_text == text  # a streamed response is stored too


def test_a_function_tool_round_trip(sdk: openai.OpenAI) -> None:
    first = sdk.responses.create(model=VLLM, input="What is the weather in Paris?", tools=[WEATHER],  # type: ignore[list-item]
                                 tool_choice=FORCE_WEATHER, max_output_tokens=100)  # type: ignore[arg-type]
    calls = [item for item in first.output if item.type == "function_call"]
    assert first.status == "completed" and len(calls) == 1
    call = calls[0]
    assert call.name == "get_weather" and json.loads(call.arguments)["city"] in ("Paris", "Oslo")
    assert call.call_id and call.id and call.id.startswith("fc_")
    second = sdk.responses.create(model=VLLM, previous_response_id=first.id, tools=[WEATHER],  # type: ignore[list-item]
                                  input=[{"type": "function_call_output", "call_id": call.call_id,
                                          "output": "sunny, 21 C"}], max_output_tokens=16)
    assert second.output_text and second.previous_response_id == first.id
    assert second.usage and first.usage and second.usage.input_tokens > first.usage.input_tokens
    # The same round trip without stored state: the client sends the call back itself.
    again = sdk.responses.create(model=VLLM, store=False, tools=[WEATHER], max_output_tokens=16,  # type: ignore[list-item]
                                 input=[{"role": "user", "content": "Weather in Paris?"},
                                        {"type": "function_call", "call_id": call.call_id, "name": call.name,
                                         "arguments": call.arguments},
                                        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}])
    assert again.output_text and not again.store


def test_a_streamed_tool_call_is_a_function_call_item_with_argument_deltas(http: httpx.Client) -> None:
    events = streamed(http, input="Weather?", tools=[WEATHER], tool_choice=FORCE_WEATHER, max_output_tokens=100)
    kinds = [event["type"] for event in events]
    assert kinds[2] == "response.output_item.added" and events[2]["item"]["type"] == "function_call"
    assert "response.function_call_arguments.delta" in kinds
    assert kinds[-3:] == ["response.function_call_arguments.done", "response.output_item.done", "response.completed"]
    deltas = "".join(event["delta"] for event in events if event["type"] == "response.function_call_arguments.delta")
    done = events[-3]
    assert done["arguments"] == deltas and done["name"] == "get_weather"
    assert json.loads(deltas)["city"] in ("Paris", "Oslo")
    assert events[-1]["response"]["output"][0]["arguments"] == deltas


def test_previous_response_id_carries_the_conversation_but_not_the_instructions(sdk: openai.OpenAI) -> None:
    first = sdk.responses.create(model=VLLM, input="My name is Ada.", instructions="You are a pirate. " * 20,
                                 max_output_tokens=16)
    second = sdk.responses.create(model=VLLM, input="What is my name?", previous_response_id=first.id,
                                  max_output_tokens=16)
    alone = sdk.responses.create(model=VLLM, input="What is my name?", max_output_tokens=16)
    assert second.instructions is None
    assert first.usage and second.usage and alone.usage
    # the second's prompt holds the first's input and answer, and not its (long) instructions
    carried = second.usage.input_tokens - alone.usage.input_tokens
    assert 16 < carried < first.usage.input_tokens
    third = sdk.responses.create(model=VLLM, input="And again?", previous_response_id=second.id,
                                 max_output_tokens=16)
    assert third.usage and third.usage.input_tokens > second.usage.input_tokens
    assert [item.type for item in sdk.responses.input_items.list(third.id, order="asc").data] == ["message"]


def test_structured_output_follows_the_json_schema(sdk: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Oslo"]},
                                               "days": {"type": "integer", "minimum": 1, "maximum": 7}},
              "required": ["city", "days"], "additionalProperties": False}
    response = sdk.responses.create(model=VLLM, input="A trip, as JSON.", max_output_tokens=120,
                                    text={"format": {"type": "json_schema", "name": "trip", "schema": schema,
                                                     "strict": True}})
    trip = json.loads(response.output_text)
    assert trip["city"] in ("Paris", "Oslo") and 1 <= trip["days"] <= 7
    assert response.text and response.text.format.type == "json_schema"  # type: ignore[union-attr]


def test_background_response_is_polled_and_cancelled(sdk: openai.OpenAI, http: httpx.Client) -> None:
    done = sdk.responses.create(model=VLLM, input="Hi", background=True, max_output_tokens=16)
    assert done.status == "queued" and done.background
    final = wait_for(sdk, done.id)
    assert final.status in ("completed", "incomplete") and final.output_text
    conforms("Response", http.get(f"/oai/v1/responses/{done.id}").json())
    message = error_of(http.post(f"/oai/v1/responses/{done.id}/cancel"), 400, "response_id")
    assert f"status '{final.status}'" in message

    long = sdk.responses.create(model=VLLM, input="Write a long story.", background=True, max_output_tokens=500,
                                extra_body={"ignore_eos": True})
    cancelled = sdk.responses.cancel(long.id)
    assert cancelled.status == "cancelled"
    conforms("Response", http.post(f"/oai/v1/responses/{long.id}/cancel").json())  # again: the same answer
    time.sleep(1.0)
    assert sdk.responses.retrieve(long.id).status == "cancelled"  # the job stopped and wrote nothing over it
    foreground = sdk.responses.create(model=VLLM, input="Hi", max_output_tokens=16)
    error_of(http.post(f"/oai/v1/responses/{foreground.id}/cancel"), 400, "response_id")


def wait_for(sdk: openai.OpenAI, response_id: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        response = sdk.responses.retrieve(response_id)
        if response.status not in ("queued", "in_progress") or time.monotonic() > deadline:
            return response
        time.sleep(0.1)


def test_a_background_stream_is_picked_up_again_where_the_client_left_off(http: httpx.Client) -> None:
    with http.stream("POST", "/oai/v1/responses", json={
            "model": VLLM, "input": "Count.", "background": True, "stream": True, "max_output_tokens": 40}) as answer:
        assert answer.status_code == 200
        lines = answer.iter_lines()
        head = [next(lines) for _ in range(12)]  # four events or more: "event:", "data:", a blank line each
    first = [json.loads(line.removeprefix("data: ")) for line in head if line.startswith("data: ")]
    assert [event["type"] for event in first][:3] == ["response.created", "response.queued", "response.in_progress"]
    assert first[0]["response"]["status"] == "queued" and first[0]["response"]["background"]
    response_id, seen = first[0]["response"]["id"], first[-1]["sequence_number"]
    with http.stream("GET", f"/oai/v1/responses/{response_id}",
                     params={"stream": "true", "starting_after": seen}) as rest:
        assert rest.status_code == 200, rest.read()
        events = events_of(rest)
    assert events[0]["sequence_number"] == seen + 1 and events[-1]["type"] in ("response.completed",
                                                                              "response.incomplete")
    with http.stream("GET", f"/oai/v1/responses/{response_id}", params={"stream": "true"}) as whole:
        replay = events_of(whole)
    assert replay[0]["sequence_number"] == 0 and replay[-1] == events[-1]
    text = "".join(e["delta"] for e in replay if e["type"] == "response.output_text.delta")
    assert text == replay[-1]["response"]["output"][0]["content"][0]["text"]
    assert http.get(f"/oai/v1/responses/{response_id}").json()["output"] == replay[-1]["response"]["output"]
    plain = raw(http, input="Hi")
    error_of(http.get(f"/oai/v1/responses/{plain['id']}", params={"stream": "true"}), 400, "stream")


def test_input_items_page_in_either_order(sdk: openai.OpenAI, http: httpx.Client) -> None:
    items = [{"role": "user", "content": f"message {n}"} for n in range(5)]
    response = sdk.responses.create(model=VLLM, input=items, max_output_tokens=16)  # type: ignore[arg-type]
    newest = sdk.responses.input_items.list(response.id, limit=2)
    texts = [item.content[0].text for item in newest.data]  # type: ignore[union-attr]
    assert texts == ["message 4", "message 3"] and newest.has_more
    following = sdk.responses.input_items.list(response.id, limit=10, after=newest.data[-1].id)
    assert [item.content[0].text for item in following.data] == ["message 2", "message 1", "message 0"]  # type: ignore[union-attr]
    assert not following.has_more
    assert [item.content[0].text for item in sdk.responses.input_items.list(  # type: ignore[union-attr]
        response.id, order="asc").data] == [f"message {n}" for n in range(5)]
    every = list(sdk.responses.input_items.list(response.id, limit=2))  # the SDK's auto-paging
    assert len(every) == 5


def test_store_false_keeps_nothing_and_delete_removes(sdk: openai.OpenAI, http: httpx.Client) -> None:
    unstored = raw(http, input="Hi", store=False)
    assert unstored["store"] is False
    error_of(http.get(f"/oai/v1/responses/{unstored['id']}"), 404, "response_id")
    error_of(http.post("/oai/v1/responses", json={"model": VLLM, "input": "x",
                                                  "previous_response_id": unstored["id"]}), 404,
             "previous_response_id")
    stored = sdk.responses.create(model=VLLM, input="Hi", max_output_tokens=16)
    sdk.responses.delete(stored.id)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(stored.id)
    assert http.delete(f"/oai/v1/responses/{stored.id}").status_code == 404


def test_the_transformers_engine_answers_and_streams_the_same(http: httpx.Client) -> None:
    whole = raw(http, model=HF, input="Hello", seed=2, max_output_tokens=12)
    events = streamed(http, model=HF, input="Hello", seed=2, max_output_tokens=12)
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == whole["output"][0]["content"][0]["text"]
    assert whole["usage"]["output_tokens"] == 12
    chained = raw(http, model=HF, input="More", previous_response_id=whole["id"], max_output_tokens=4)
    assert chained["usage"]["input_tokens"] > whole["usage"]["input_tokens"]


def test_truncation_auto_drops_the_oldest_turns_to_fit_the_window(http: httpx.Client) -> None:
    window = http.get("/v1/models/" + VLLM.replace("/", "%2F")).json()["data"]["context_window"]
    history = []
    for n in range(8 * window // 2048):  # eight of these turns are past a window of 2048 tokens
        history += [{"role": "user", "content": f"turn {n}: " + "words and more words " * 60},
                    {"role": "assistant", "content": "noted " * 40}]
    long = [*history, {"role": "user", "content": "And now?"}]
    refused = http.post("/oai/v1/responses", json={"model": VLLM, "input": long, "max_output_tokens": 16})
    assert f"maximum context length is {window} tokens" in error_of(refused, 400, "input")
    assert refused.json()["error"]["code"] == "context_length_exceeded"
    fitted = raw(http, input=long, truncation="auto")
    assert fitted["truncation"] == "auto" and fitted["usage"]["input_tokens"] + 16 <= window


# --- what it refuses -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "param", "says"), [
    ({"tools": [{"type": "web_search"}]}, "tools[0].type", "'web_search' is a hosted tool"),
    ({"tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]}, "tools[0].type", "'file_search'"),
    ({"input": [{"type": "function_call_output", "call_id": "call_nope", "output": "x"}]}, "input[0].call_id",
     "'call_nope'"),
    ({"background": True, "store": False}, "background", "must be stored"),
    ({"input": [{"type": "computer_call_output", "call_id": "c", "output": {}}]}, "input[0].type",
     "'computer_call_output'"),
    ({"text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "banana"}}}},
     "text.format.schema", "'banana' is not a JSON type"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "name": "get_time"}}, "tool_choice.name",
     "'get_time'"),
])
def test_bad_input_is_an_openai_400_naming_the_field(http: httpx.Client, body: dict[str, Any], param: str,
                                                     says: str) -> None:
    answer = http.post("/oai/v1/responses", json={"model": VLLM, "input": "hi", **body})
    assert says in error_of(answer, 400, param)


def test_the_sdk_raises_its_typed_errors(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.responses.create(model=VLLM, input="hi", tools=[{"type": "web_search"}])
    assert caught.value.param == "tools[0].type"  # type: ignore[attr-defined]
    with pytest.raises(openai.NotFoundError) as missing:
        sdk.responses.create(model=VLLM, input="hi", previous_response_id="resp_unknown")
    assert missing.value.param == "previous_response_id"  # type: ignore[attr-defined]
    with pytest.raises(openai.NotFoundError):
        sdk.responses.create(model="nope/none", input="hi")


def test_a_key_sees_only_its_own_responses(appliance: RunningAppliance, sdk: openai.OpenAI) -> None:
    mine = sdk.responses.create(model=VLLM, input="secret", max_output_tokens=16, background=False)
    job = sdk.responses.create(model=VLLM, input="secret", max_output_tokens=300, background=True)
    with appliance.client(appliance.create_key()) as other:
        for method, path in (("GET", ""), ("DELETE", ""), ("GET", "/input_items")):
            error_of(other.request(method, f"/oai/v1/responses/{mine.id}{path}"), 404, "response_id")
        error_of(other.post(f"/oai/v1/responses/{job.id}/cancel"), 404, "response_id")
        error_of(other.post("/oai/v1/responses", json={"model": VLLM, "input": "x", "previous_response_id": mine.id}),
                 404, "previous_response_id")
    assert sdk.responses.retrieve(mine.id).id == mine.id
    assert sdk.responses.retrieve(job.id).id == job.id


# --- metering and access, as chat's ----------------------------------------------------------------------------------


def test_metering_and_access_are_chats(appliance: RunningAppliance) -> None:
    narrow = appliance.create_key("--model", HF)
    with appliance.client(narrow) as client:
        denied = client.post("/oai/v1/responses", json={"model": VLLM, "input": "hi"})
        assert denied.status_code == 403 and denied.json()["error"]["type"] == "request_forbidden"
    budgeted = appliance.create_key("--budget-tokens", "120", "--budget-period", "day")
    with appliance.client(budgeted) as client:
        answers = [client.post("/oai/v1/responses", json={"model": VLLM, "input": "hi", "max_output_tokens": 16})
                   for _ in range(8)]
        served = [a.json()["usage"]["total_tokens"] for a in answers if a.status_code == 200]
        refused = [a for a in answers if a.status_code != 200]
        assert served and refused and sum(served) <= 120
        assert {a.json()["error"]["code"] for a in refused} == {"insufficient_quota"}  # OpenAI's code for it
        background = client.post("/oai/v1/responses", json={"model": VLLM, "input": "hi", "background": True})
        assert background.status_code == 200
        job = client.get(f"/oai/v1/responses/{background.json()['id']}")
        deadline = time.monotonic() + 30
        while job.json()["status"] in ("queued", "in_progress") and time.monotonic() < deadline:
            time.sleep(0.1)
            job = client.get(f"/oai/v1/responses/{background.json()['id']}")
        assert job.json()["status"] == "failed" and job.json()["error"]["code"] == "rate_limit_exceeded"
        assert "budget" in job.json()["error"]["message"]
        rows = usage_rows(client, expected=9)
    assert len(rows) == 9  # one row per response: the eight, and the background job's (its POST is none)
    assert sum(row["tokens_in"] + row["tokens_out"] for row in rows) == sum(served)
    assert {row["route"] for row in rows} == {"/oai/v1/responses"}


def usage_rows(client: httpx.Client, expected: int, timeout: float = 10) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:  # usage rows are written a moment after the answer
        rows = client.get("/v1/accounting/usage", params={"limit": 100}).json()["data"]["items"]
        if len(rows) >= expected or time.monotonic() > deadline:
            return rows  # type: ignore[no-any-return]
        time.sleep(0.2)


# --- batch lines -----------------------------------------------------------------------------------------------------


def test_batch_lines_of_url_v1_responses(sdk: openai.OpenAI) -> None:
    lines = [{"custom_id": f"r{n}", "method": "POST", "url": "/v1/responses",
              "body": {"model": VLLM, "input": f"Hello {n}", "max_output_tokens": 16}} for n in range(3)]
    lines.append({"custom_id": "bad", "method": "POST", "url": "/v1/responses",
                  "body": {"model": VLLM, "input": "x", "tools": [{"type": "web_search"}]}})
    upload = sdk.files.create(file=("lines.jsonl", jsonl(lines)), purpose="batch")
    batch = sdk.batches.create(input_file_id=upload.id, endpoint="/v1/responses", completion_window="24h")
    with httpx.Client(base_url=str(sdk.base_url).removesuffix("/oai/v1/"),
                      headers={"Authorization": f"Bearer {sdk.api_key}"}) as client:
        done = wait_batch(client, batch.id, path="/oai/v1/batches/")
    assert done["status"] == "completed" and done["request_counts"]["completed"] == 3
    output = [json.loads(line) for line in sdk.files.content(done["output_file_id"]).text.splitlines()]
    for line in output:
        response = line["response"]["body"]
        conforms("Response", response)
        assert sdk.responses.retrieve(response["id"]).output_text == response["output"][0]["content"][0]["text"]
    errors = [json.loads(line) for line in sdk.files.content(done["error_file_id"]).text.splitlines()]
    assert [line["custom_id"] for line in errors] == ["bad"] and "web_search" in json.dumps(errors)


# --- the OpenAI Agents SDK and LangChain ----------------------------------------------------------------------------


class Forecast(BaseModel):
    sky: Literal["sunny", "rainy"]


def test_the_agents_sdk_runs_a_tool_using_agent(appliance: RunningAppliance, key: str) -> None:
    from agents import (Agent, ModelSettings, RunConfig, Runner, function_tool, set_default_openai_api,
                        set_default_openai_client, set_tracing_disabled)
    from agents.models.multi_provider import MultiProvider

    set_tracing_disabled(True)  # nothing leaves the box: no traces to OpenAI
    set_default_openai_api("responses")
    asked: list[str] = []

    @function_tool
    def get_weather(city: Literal["Paris", "Oslo"]) -> str:
        """The weather in a city."""
        asked.append(city)
        return f"sunny in {city}"

    async def run() -> tuple[Any, Any]:
        set_default_openai_client(openai.AsyncOpenAI(base_url=f"{appliance.url}/oai/v1", api_key=key,
                                                     max_retries=0), use_for_tracing=False)
        # A slug's "scailabs/" is no provider prefix of the SDK's: the model id goes to the box as it is.
        config = RunConfig(model_provider=MultiProvider(unknown_prefix_mode="model_id"))
        # The tool first (forced: a random model would not choose it); then, the tool choice reset to auto as the
        # SDK does after a call, the answer in a schema that ends it (a random model stops nowhere by itself).
        agent = Agent(name="weather", instructions="Answer with the weather.", model=VLLM, tools=[get_weather],
                      output_type=Forecast, model_settings=ModelSettings(tool_choice="get_weather", max_tokens=200,
                                                                         extra_body={"seed": 7}))
        result = await Runner.run(agent, "What is the weather in Paris?", max_turns=4, run_config=config)
        streamed_run = Runner.run_streamed(agent, "And in Oslo?", max_turns=4, run_config=config)
        async for _event in streamed_run.stream_events():
            pass
        return result, streamed_run

    result, streamed_run = asyncio.run(run())
    assert len(asked) == 2 and set(asked) <= {"Paris", "Oslo"}  # the tool ran once per run
    for outcome in (result, streamed_run):
        kinds = [item.type for item in outcome.new_items]
        assert kinds[:2] == ["tool_call_item", "tool_call_output_item"] and kinds[-1] == "message_output_item"
        assert isinstance(outcome.final_output, Forecast) and outcome.final_output.sky in ("sunny", "rainy")


def test_langchain_chats_streams_and_calls_tools_over_the_responses_api(appliance: RunningAppliance,
                                                                        key: str) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model=VLLM, base_url=f"{appliance.url}/oai/v1", api_key=key, use_responses_api=True,  # type: ignore[arg-type]
                     max_tokens=16, max_retries=0)
    message = llm.invoke("Hello there")
    assert message.text and message.response_metadata["id"].startswith("resp_")
    assert message.usage_metadata and message.usage_metadata["output_tokens"] == 16
    pieces = list(llm.stream("Hello there"))
    assert "".join(piece.text for piece in pieces)
    tool = {"type": "function", "function": {k: v for k, v in WEATHER.items() if k != "type"}}
    roomier = ChatOpenAI(model=VLLM, base_url=f"{appliance.url}/oai/v1", api_key=key,  # type: ignore[arg-type]
                         use_responses_api=True, max_tokens=100, max_retries=0)
    called = roomier.bind_tools([tool], tool_choice="get_weather").invoke("Weather in Oslo?")
    assert called.tool_calls and called.tool_calls[0]["name"] == "get_weather"
    assert called.tool_calls[0]["args"]["city"] in ("Paris", "Oslo")


# --- the Codex CLI (opt-in: its npm package is 400 MB) ----------------------------------------------------------------

CODEX = Path(__file__).resolve().parents[2] / ".cache" / "codex" / "node_modules" / ".bin" / "codex"


@pytest.mark.skipif(not CODEX.exists(), reason="opt-in: `npm install --prefix .cache/codex @openai/codex@0.169.0` "
                                               "(its binary ships in the npm package) to run the Codex CLI test")
def test_the_codex_cli_speaks_to_the_box_and_only_the_tiny_window_refuses_its_prompt(
        appliance: RunningAppliance, key: str, tmp_path: Path) -> None:
    """Codex's whole request (developer messages, its function tools, reasoning, include, store false, a stream)
    is taken; its prompt (≈ 10k tokens of instructions and tool schemas) cannot fit the tiny model's 2048-token
    window, and that is the one refusal, a clean 400 Codex shows. A real model on a GPU box answers it."""
    provider = (f'model_providers.box={{name="box",base_url="{appliance.url}/oai/v1",env_key="BOX_KEY",'
                'wire_api="responses"}')
    home = tmp_path / "codex-home"
    home.mkdir()
    # The box has no hosted tools: Codex's web search and multi-agent namespace are turned off, its own
    # function tools (shell, …) stay.
    done = subprocess.run(
        [str(CODEX), "exec", "--skip-git-repo-check", "-c", "model_provider=box", "-c", provider,
         "-c", "web_search=disabled", "-c", "features.multi_agent=false", "-c", "analytics.enabled=false",
         "-m", VLLM, "Say hello."],
        cwd=tmp_path, capture_output=True, text=True, timeout=180,
        env={**os.environ, "CODEX_HOME": str(home), "BOX_KEY": key})
    said = done.stdout + done.stderr
    assert "input: This model's maximum context length is" in said, said[-3000:]
    assert "is a hosted tool" not in said and "is not supported" not in said
