"""A streamed chat completion becomes the Responses API's event stream, event for event as OpenAI's document has it.

The chat chunks here are the shapes vLLM streams (text, then tool calls with
their arguments in pieces, a usage chunk last); every event made is checked
against ``shared/openai-openapi.yaml`` and against the protocol's models.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import TypeAdapter

from appliance.protocol.responses import Response, StreamEvent
from appliance.serving.response_events import EventStream
from tests.support.openai_schema import conforms, conforms_event

EVENTS: TypeAdapter[Any] = TypeAdapter(StreamEvent)
USAGE = {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15, "prompt_tokens_details": {"cached_tokens": 3}}


def skeleton() -> dict[str, Any]:
    return {"id": "resp_1", "object": "response", "created_at": 1700000000, "status": "in_progress",
            "background": False, "completed_at": None, "error": None, "incomplete_details": None,
            "instructions": None, "max_output_tokens": None, "model": "m", "output": [], "parallel_tool_calls": True,
            "previous_response_id": None, "reasoning": None, "store": True, "temperature": None,
            "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [], "top_p": None,
            "truncation": "disabled", "metadata": {}}


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, usage: dict[str, Any] | None = None) -> bytes:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    body: dict[str, Any] = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": choices}
    if usage:
        body["usage"] = usage
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def parse(stream: bytes) -> list[dict[str, Any]]:
    """The events of a stream, each frame checked: ``event:`` names the type its data has."""
    events = []
    for frame in stream.split(b"\n\n")[:-1]:
        head, data = frame.split(b"\n", 1)
        event = json.loads(data.removeprefix(b"data: "))
        assert head == b"event: " + event["type"].encode()
        events.append(event)
    return events


def run(frames: list[bytes], parallel: bool = True) -> list[dict[str, Any]]:
    events = EventStream(skeleton(), parallel_tool_calls=parallel)
    events.lifecycle("response.created")
    events.lifecycle("response.in_progress")
    out = events.take()
    for data in frames:
        assert events.feed_frames(data) is None
        out += events.take()
    events.complete(1700000001)
    return parse(out + events.take())


def without_nulls(value: Any) -> Any:
    """A JSON value without its null members: a model may write ``"description": null`` where we leave it out."""
    if isinstance(value, dict):
        return {key: without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [without_nulls(item) for item in value]
    return value


def check(events: list[dict[str, Any]]) -> None:
    """Numbered 0, 1, 2, …; each event valid for OpenAI's document and for the protocol's models."""
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    for event in events:
        conforms_event(event)
        assert without_nulls(json.loads(EVENTS.validate_python(event).model_dump_json())) == without_nulls(event)
        if "response" in event:
            conforms("Response", event["response"])
            Response.model_validate(event["response"])


def test_a_text_answer_is_the_documented_sequence_of_events() -> None:
    events = run([chunk({"role": "assistant", "content": ""}), chunk({"content": "Hel"}), chunk({"content": "lo ✓"}),
                  chunk({}, finish="stop"), chunk(usage=USAGE), b"data: [DONE]\n\n"])
    check(events)
    assert [event["type"] for event in events] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done", "response.completed"]
    assert [e["delta"] for e in events if e["type"] == "response.output_text.delta"] == ["Hel", "lo ✓"]
    final = events[-1]["response"]
    assert final["status"] == "completed" and final["completed_at"] == 1700000001
    assert final["output"][0]["content"][0]["text"] == "Hello ✓" and final["output"][0]["status"] == "completed"
    assert final["usage"] == {"input_tokens": 11, "input_tokens_details": {"cached_tokens": 3, "cache_write_tokens": 0},
                              "output_tokens": 4, "output_tokens_details": {"reasoning_tokens": 0},
                              "total_tokens": 15}
    added = events[2]["item"]
    assert added["status"] == "in_progress" and added["content"] == []
    assert events[0]["response"]["status"] == "in_progress" and events[0]["response"]["output"] == []


def test_the_delta_templates_are_what_the_models_would_write() -> None:
    events = EventStream(skeleton())
    events.feed_frames(chunk({"content": 'quote " and \\ and ünïcode'}))
    frames = events.take().split(b"\n\n")[:-1]
    delta = frames[-1]
    data = json.loads(delta.split(b"data: ", 1)[1])
    assert delta.split(b"data: ", 1)[1] == EVENTS.validate_python(data).model_dump_json().encode()


def test_tool_calls_are_function_call_items_each_closed_before_the_next() -> None:
    call = {"index": 0, "id": "chatcmpl-tool-a", "type": "function", "function": {"name": "get_weather",
                                                                                  "arguments": ""}}
    events = run([chunk({"role": "assistant", "content": "Let me look."}),
                  chunk({"tool_calls": [call]}),
                  chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
                  chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}),
                  chunk({"tool_calls": [{**call, "index": 1, "id": "chatcmpl-tool-b",
                                         "function": {"name": "noop", "arguments": "{}"}}]}),
                  chunk({}, finish="tool_calls"), chunk(usage=USAGE)])
    check(events)
    kinds = [event["type"] for event in events]
    assert kinds[2:] == [
        "response.output_item.added", "response.content_part.added", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done", "response.completed"]
    output = events[-1]["response"]["output"]
    assert [item["type"] for item in output] == ["message", "function_call", "function_call"]
    assert output[1]["call_id"] == "chatcmpl-tool-a" and json.loads(output[1]["arguments"]) == {"city": "Oslo"}
    assert output[2]["name"] == "noop" and output[2]["arguments"] == "{}"
    assert [e["output_index"] for e in events if e["type"] == "response.output_item.added"] == [0, 1, 2]


def test_without_parallel_tool_calls_only_the_first_call_is_kept() -> None:
    first = {"index": 0, "id": "a", "function": {"name": "f", "arguments": "{}"}}
    second = {"index": 1, "id": "b", "function": {"name": "g", "arguments": "{}"}}
    events = run([chunk({"tool_calls": [first]}), chunk({"tool_calls": [second]}), chunk({}, finish="tool_calls")],
                 parallel=False)
    check(events)
    assert [item["name"] for item in events[-1]["response"]["output"]] == ["f"]


def test_running_out_of_tokens_is_incomplete_with_its_reason() -> None:
    events = run([chunk({"content": "abc"}), chunk({}, finish="length"), chunk(usage=USAGE)])
    check(events)
    final = events[-1]
    assert final["type"] == "response.incomplete"
    assert final["response"]["status"] == "incomplete" and final["response"]["completed_at"] is None
    assert final["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["response"]["output"][0]["status"] == "incomplete"


def test_an_empty_answer_is_one_empty_message() -> None:
    events = run([chunk({"role": "assistant", "content": ""}), chunk({}, finish="stop")])
    check(events)
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == ""


@pytest.mark.parametrize("frame", [
    b'event: error\ndata: {"error":{"message":"The engine died.","type":"api_error","param":null,"code":"x"}}\n\n',
    b"event: error\ndata: not json\n\n",
])
def test_a_stream_that_breaks_off_ends_with_an_error_event_and_response_failed(frame: bytes) -> None:
    events = EventStream(skeleton())
    events.lifecycle("response.created")
    assert events.feed_frames(chunk({"content": "par"})) is None
    failure = events.feed_frames(frame + b"data: [DONE]\n\n")
    assert failure
    events.fail("server_error", failure)
    parsed = parse(events.take())
    check(parsed)
    assert [event["type"] for event in parsed][-5:] == [
        "response.output_text.done", "response.content_part.done", "response.output_item.done", "error",
        "response.failed"]
    failed = parsed[-1]["response"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "server_error"
    assert failed["output"][0]["content"][0]["text"] == "par" and failed["output"][0]["status"] == "incomplete"


def test_numbering_goes_on_from_a_given_sequence_number() -> None:
    events = EventStream(skeleton(), seq=7)
    events.feed_frames(chunk({"content": "x"}))
    assert [seq for seq, _frame in events.take_numbered()] == [7, 8, 9]
