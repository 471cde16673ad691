"""A Responses request becomes the chat completion its model answers; each mistake in it is a 400 naming its field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from appliance.protocol.responses import ResponseRequest
from appliance.serving.errors import ApiError, ErrorCode
from appliance.serving.response_chat import (InvalidRequest, chat_messages, chat_request, check_calls,
                                             drop_oldest_turn, output_of, stored_items)
from appliance.serving.responses import parse_request
from tests.support.openai_schema import conforms

WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
           "strict": True}


def request(**fields: Any) -> ResponseRequest:
    return parse_request(json.dumps({"model": "m", "input": "hi", **fields}).encode())


def test_a_string_input_is_one_user_message_and_instructions_a_system_message_before_it() -> None:
    body = request(instructions="Be brief.")
    items = stored_items(body)
    assert [item["type"] for item in items] == ["message"] and items[0]["id"].startswith("msg_")
    assert items[0]["content"] == [{"type": "input_text", "text": "hi"}]
    assert chat_messages(body.instructions, items).messages == [{"role": "system", "content": "Be brief."},
                                                      {"role": "user", "content": "hi"}]


def test_items_become_chat_messages_with_tool_calls_and_tool_results() -> None:
    body = request(input=[
        {"role": "developer", "content": "Use tools."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather "},
                                                        {"type": "input_text", "text": "in Oslo?"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Looking."}]},
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": '{"city":"Oslo"}'},
        {"type": "function_call", "call_id": "c2", "name": "get_weather", "arguments": '{"city":"Paris"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "cold"},
        {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "warm"}]},
        {"role": "user", "content": [{"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]},
    ])
    items = stored_items(body)
    for item in items:
        conforms("ItemResource", item)  # what input_items lists is what OpenAI's document says it lists
    messages = chat_messages(None, items).messages
    assert messages == [
        {"role": "system", "content": "Use tools."},
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": "Looking.", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}},
            {"id": "c2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "cold"},
        {"role": "tool", "tool_call_id": "c2", "content": "warm"},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA",
                                                                         "detail": "auto"}}]},
    ]
    chat = chat_request(body, messages, stream=False)  # a valid chat request
    assert chat.messages[2].tool_calls[1].id == "c2"  # type: ignore[union-attr]


PNG = "data:image/png;base64,AAAA"


def test_images_and_files_become_chat_parts_named_by_the_responses_field_they_came_in() -> None:
    body = request(instructions="Be brief.", input=[
        {"role": "user", "content": "Look."},
        {"role": "assistant", "content": "At what?"},
        {"role": "user", "content": [
            {"type": "input_text", "text": "These:"},
            {"type": "input_image", "image_url": PNG, "detail": "low"},
            {"type": "input_image", "file_id": "file-abc", "detail": "original"},
            {"type": "input_file", "file_id": "file-def", "filename": "cat.png"},
            {"type": "input_file", "file_data": "AAAA"},
            {"type": "input_file", "file_url": "https://lan.example/cat.png"},
            {"type": "input_image", "image_url": PNG, "detail": None}]},  # null: as OpenAI's request schema allows
    ])
    items = stored_items(body)
    for item in items:
        conforms("ItemResource", item)
    assert items[2]["content"][2] == {"type": "input_image", "image_url": None, "file_id": "file-abc",
                                      "detail": "original"}
    assert items[2]["content"][3] == {"type": "input_file", "file_id": "file-def", "filename": "cat.png"}
    conversation = chat_messages(body.instructions, items)
    assert conversation.messages[3]["content"] == [
        {"type": "text", "text": "These:"},
        {"type": "image_url", "image_url": {"url": PNG, "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "scaigrid://file/file-abc", "detail": "high"}},
        {"type": "file", "file": {"file_id": "file-def", "filename": "cat.png"}},
        {"type": "file", "file": {"file_data": "AAAA"}},
        {"type": "image_url", "image_url": {"url": "https://lan.example/cat.png"}},  # read under media_url_allow
        {"type": "image_url", "image_url": {"url": PNG, "detail": "auto"}}]
    chat_request(body, conversation.messages, stream=False)  # a valid chat request
    # the system message of the instructions is chat message 0: the image of input[2] is in chat message 3
    named = [conversation.part_name(3, part, field) for part, field in
             [(1, "image_url.url"), (2, "image_url.url"), (3, "file.file_id"), (4, "file.file_data"),
              (5, "image_url.url")]]
    assert named == ["input[2].content[1].image_url", "input[2].content[2].file_id", "input[2].content[3].file_id",
                     "input[2].content[4].file_data", "input[2].content[5].file_url"]


def test_parts_of_a_continued_response_are_named_by_that_response_and_survive_truncation() -> None:
    earlier = stored_items(request(input=[{"role": "user", "content": [
        {"type": "input_text", "text": "What is this?"}, {"type": "input_image", "image_url": PNG}]}]))
    answer = [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "A cat."}]}]
    now = stored_items(request(input=[{"role": "user", "content": [{"type": "input_file", "file_data": "AAAA"}]}]))
    conversation = chat_messages(None, earlier + answer + now, ["resp_1.input[0]", "resp_1.output[0]", "input[0]"])
    assert conversation.part_name(0, 1, "image_url.url") == "resp_1.input[0].content[1].image_url"
    assert conversation.part_name(2, 0, "file.file_data") == "input[0].content[0].file_data"
    shorter = conversation.without_oldest_turn()
    assert shorter is not None and shorter.messages == conversation.messages[2:]
    assert shorter.part_name(0, 0, "file.file_data") == "input[0].content[0].file_data"
    assert shorter.without_oldest_turn() is None


@pytest.mark.parametrize(("item", "field"), [
    ({"role": "system", "content": [{"type": "input_image", "image_url": PNG}]}, "input[0].content[0].type"),
    ({"role": "developer", "content": [{"type": "input_text", "text": "x"}, {"type": "input_file",
                                                                             "file_id": "f"}]},
     "input[0].content[1].type"),
    ({"role": "assistant", "content": [{"type": "input_image", "file_id": "f"}]}, "input[0].content[0].type"),
])
def test_an_image_outside_a_user_message_is_refused_not_dropped(item: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        stored_items(request(input=[item]))
    assert caught.value.details and caught.value.details[0]["field"] == field
    assert "carries text only" in caught.value.message and "send it in a user message" in caught.value.message


def test_an_image_in_a_function_call_output_is_refused_not_dropped() -> None:
    body = request(input=[{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
                          {"type": "function_call_output", "call_id": "c",
                           "output": [{"type": "input_text", "text": "a chart:"},
                                      {"type": "input_image", "image_url": PNG}]}])
    with pytest.raises(InvalidRequest) as caught:
        stored_items(body)
    assert caught.value.details and caught.value.details[0]["field"] == "input[1].output[1].type"
    assert "a function_call_output's output (a chat tool message) carries text only" in caught.value.message


def test_the_options_map_onto_the_chat_request() -> None:
    body = request(tools=[WEATHER], tool_choice={"type": "function", "name": "get_weather"}, temperature=0.5,
                   top_p=0.9, max_output_tokens=64, parallel_tool_calls=False, seed=3, user="u1", top_k=5,
                   ignore_eos=True,
                   text={"format": {"type": "json_schema", "name": "city", "strict": True,
                                    "schema": {"type": "object", "properties": {"name": {"type": "string"}}}}})
    chat = chat_request(body, [{"role": "user", "content": "hi"}], stream=True)
    data = chat.model_dump(exclude_none=True)
    assert data["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "The weather in a city.", "parameters": WEATHER["parameters"],
        "strict": True}}]
    assert data["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert (data["temperature"], data["top_p"], data["max_tokens"], data["seed"], data["user"]) == (0.5, 0.9, 64, 3,
                                                                                                    "u1")
    assert data["parallel_tool_calls"] is False and data["stream_options"] == {"include_usage": True}
    assert (data["top_k"], data["ignore_eos"]) == (5, True)  # vLLM's extras, as chat passes them
    assert data["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "city", "strict": True, "schema": {"type": "object", "properties": {"name": {"type": "string"}}}}}
    assert chat_request(request(text={"format": {"type": "json_object"}}), [{"role": "user", "content": "x"}],
                        False).response_format == {"type": "json_object"}


def test_a_function_call_output_must_answer_a_call_before_it() -> None:
    history = [{"type": "function_call", "call_id": "old", "name": "f", "arguments": "{}"}]
    check_calls(history, [{"type": "function_call_output", "call_id": "old", "output": "x"}])
    with pytest.raises(InvalidRequest) as caught:
        check_calls(history, [{"type": "message"}, {"type": "function_call_output", "call_id": "new", "output": "x"}])
    assert caught.value.code is ErrorCode.VALIDATION_ERROR and caught.value.details == [
        {"field": "input[1].call_id", "message": caught.value.details[0]["message"]}]
    assert "'new'" in caught.value.message


def test_truncation_drops_the_oldest_turn_and_keeps_the_system_messages() -> None:
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "1"},
                {"role": "assistant", "content": None, "tool_calls": []}, {"role": "tool", "content": "r"},
                {"role": "user", "content": "2"}, {"role": "assistant", "content": "a"},
                {"role": "user", "content": "3"}]
    once = drop_oldest_turn(messages)
    assert once == [messages[0], *messages[4:]]
    twice = drop_oldest_turn(once or [])
    assert twice == [messages[0], messages[6]]
    assert drop_oldest_turn(twice or []) is None


def test_a_chat_completion_becomes_output_items() -> None:
    completion = {"choices": [{"message": {"role": "assistant", "content": "Sure.", "tool_calls": [
        {"id": "call_a", "type": "function", "function": {"name": "f", "arguments": "{}"}},
        {"id": "call_b", "type": "function", "function": {"name": "g", "arguments": '{"x":1}'}}]},
        "finish_reason": "tool_calls"}]}
    output, finish = output_of(completion, parallel_tool_calls=True)
    assert finish == "tool_calls" and [item["type"] for item in output] == ["message", "function_call", "function_call"]
    for item in output:
        conforms("OutputItem", item)
    assert [item["call_id"] for item in output[1:]] == ["call_a", "call_b"]
    only_first, _ = output_of(completion, parallel_tool_calls=False)
    assert [item.get("call_id") for item in only_first] == [None, "call_a"]
    calls_only, _ = output_of({"choices": [{"message": {"content": None, "tool_calls": completion["choices"][0][
        "message"]["tool_calls"][:1]}, "finish_reason": "tool_calls"}]}, True)
    assert [item["type"] for item in calls_only] == ["function_call"]


BAD = [
    ({"input": []}, "input"),
    ({"input": [{"type": "reasoning", "summary": []}]}, "input[0].type"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
    ({"input": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
     "input[0].content[0].type"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f", "file_url": "https://x"}]}]},
     "input[0].content[0]"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "filename": "a.png"}]}]}, "input[0].content[0]"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "detail": "low"}]}]}, "input[0].content[0]"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": ""}]}]},
     "input[0].content[0].image_url"),
    ({"input": [{"role": "wizard", "content": "x"}]}, "input[0].role"),
    ({"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id"),
    ({"input": [7]}, "input[0]"),
    ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"tools": [WEATHER, {"type": "file_search", "vector_store_ids": ["vs_1"]}]}, "tools[1].type"),
    ({"tools": [{"type": "code_interpreter", "container": {"type": "auto"}}]}, "tools[0].type"),
    ({"tools": [{**WEATHER, "name": "has space"}]}, "tools[0].name"),
    ({"tools": [{**WEATHER, "parameters": {"type": "string"}}]}, "tools[0].parameters"),
    ({"tools": [WEATHER, WEATHER]}, "tools[1].name"),
    ({"tool_choice": {"type": "web_search_preview"}}, "tool_choice.type"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "name": "get_time"}}, "tool_choice.name"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "banana"}}}}, "text.format.schema"),
    ({"text": {"format": {"type": "json_schema", "name": "x", "schema": {"properties": []}}}}, "text.format.schema"),
    ({"text": {"format": {"type": "json_schema", "name": "x", "schema": "a schema"}}}, "text.format.schema"),
    ({"text": {"format": {"type": "json_schema", "schema": {"type": "object"}}}}, "text.format.name"),
    ({"text": {"format": {"type": "yaml"}}}, "text.format.type"),
    ({"background": True, "store": False}, "background"),
    ({"temperature": 2.5}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"max_output_tokens": 0}, "max_output_tokens"),
    ({"metadata": {f"k{n}": "v" for n in range(17)}}, "metadata"),
    ({"truncation": "sometimes"}, "truncation"),
    ({"conversation": "conv_1"}, "conversation"),
    ({"prompt": {"id": "pmpt_1"}}, "prompt"),
    ({"previous_response_id": ""}, "previous_response_id"),
    ({"model": ""}, "model"),
]


@pytest.mark.parametrize(("change", "field"), BAD, ids=[f"{field}:{n}" for n, (_c, field) in enumerate(BAD)])
def test_bad_input_is_a_400_naming_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ApiError) as caught:
        request(**change)
    error = caught.value
    assert error.code is ErrorCode.VALIDATION_ERROR  # 400 on /oai/v1
    assert error.details and error.details[0]["field"] == field, error.details
    assert error.message.startswith(f"{field}: ")


def test_a_hosted_tool_is_refused_by_name() -> None:
    with pytest.raises(ApiError) as caught:
        request(tools=[{"type": "web_search"}])
    assert "'web_search' is a hosted tool this appliance does not have" in caught.value.message


def test_fields_openai_has_and_the_box_ignores_are_accepted() -> None:
    body = request(include=["message.output_text.logprobs"], reasoning={"effort": "low"}, service_tier="auto",
                   prompt_cache_key="k", safety_identifier="s", stream_options={"include_obfuscation": False})
    assert body.model == "m"
