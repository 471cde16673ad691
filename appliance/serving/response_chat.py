"""A Response request as the chat completion the model's chat backend answers, and that answer as a Response.

Input items are first made the stored form OpenAI lists them in (each with an
id, a message's text as ``input_text`` or ``output_text`` parts), then turned
into chat messages: ``instructions`` a system message in front, a run of
``function_call`` items one assistant message with its tool calls (after the
text that came before them), each ``function_call_output`` a tool message.
A user message's ``input_image`` becomes chat's ``image_url`` part (by
``file_id``: ``scaigrid://file/{id}``) and its ``input_file`` chat's ``file``
part (by ``file_url``: an ``image_url`` part, so that the URL is read as an
image's is, under ``media_url_allow``); serving/media_parts.py reads and checks
them, naming each by the Responses field it came in (``Conversation.part_name``).
The way back: the assistant's text one message item, each tool call one
``function_call`` item.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from appliance.ids import new_id
from appliance.protocol.chat import ChatRequest
from appliance.protocol.responses import (FormatJsonObject, FormatJsonSchema, FunctionCallItem,
                                          FunctionCallOutputItem, FunctionChoice, FunctionTool, InputFile,
                                          InputImage, MessageItem, Refusal, ResponseRequest)
from appliance.serving.errors import ApiError, ErrorCode
from appliance.serving.media_parts import message_part
from appliance.serving.media_sources import FILE_SCHEME

Item = dict[str, Any]
VLLM_EXTRAS = tuple((name, name) for name in ("seed", "top_k", "min_p", "repetition_penalty", "min_tokens",
                                             "ignore_eos"))
MEDIA_PARTS = ("input_image", "input_file")
FILE_SOURCES = ("file_id", "file_data", "file_url")


class InvalidRequest(ApiError):
    """A request the Responses API refuses (on /oai/v1, OpenAI's 400 ``invalid_request_error``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(ErrorCode.VALIDATION_ERROR, f"{field}: {message}",
                         details=[{"field": field, "message": message}])


def item_id(kind: str) -> str:
    return new_id({"message": "msg_", "function_call": "fc_", "function_call_output": "fco_"}[kind], 40)


# --- input items: the stored form --------------------------------------------------------------------------------


def stored_items(body: ResponseRequest) -> list[Item]:
    """The request's input items as they are stored and listed (``input_items``), each with an id."""
    if isinstance(body.input, str):
        return [{"type": "message", "id": item_id("message"), "role": "user", "status": "completed",
                 "content": [{"type": "input_text", "text": body.input}]}]
    items: list[Item] = []
    for index, given in enumerate(body.input):
        if isinstance(given, MessageItem):
            items.append(_message(given, index))
        elif isinstance(given, FunctionCallItem):
            items.append({"type": "function_call", "id": given.id or item_id("function_call"),
                          "call_id": given.call_id, "name": given.name, "arguments": given.arguments,
                          "status": given.status or "completed"})
        elif isinstance(given, FunctionCallOutputItem):
            if not isinstance(given.output, str):
                _text_only(given.output, f"input[{index}].output", "a function_call_output's output (a chat tool "
                                                                   "message) carries text only")
            output = given.output if isinstance(given.output, str) else [_input_part(p) for p in given.output]
            items.append({"type": "function_call_output", "id": given.id or item_id("function_call_output"),
                          "call_id": given.call_id, "output": output, "status": given.status or "completed"})
    return items


def _message(given: MessageItem, index: int) -> Item:
    assistant = given.role == "assistant"
    parts = [given.content] if isinstance(given.content, str) else given.content
    if given.role != "user":
        _text_only(parts, f"input[{index}].content", f"a {given.role} message carries text only (chat templates take "
                                                     "images and sounds in user messages)")
    content = [_output_part(part) if assistant else _input_part(part) for part in parts]
    return {"type": "message", "id": given.id or item_id("message"), "role": given.role,
            "status": given.status or "completed", "content": content}


def _text_only(parts: list[Any], field: str, why: str) -> None:
    """Refuse an image or a file where the chat message it becomes takes text: said, not dropped."""
    for index, part in enumerate(parts):
        if isinstance(part, InputImage | InputFile):
            raise InvalidRequest(f"{field}[{index}].type", f"'{part.type}' is not taken here: {why}; send it in a "
                                                           "user message")


def _text_of(part: Any) -> str:
    if isinstance(part, str):
        return part
    if isinstance(part, Refusal):
        return part.refusal
    return str(getattr(part, "text", ""))


def _input_part(part: Any) -> Item:
    if isinstance(part, InputImage):
        return {"type": "input_image", "image_url": part.image_url, "file_id": part.file_id,
                "detail": part.detail or "auto"}
    if isinstance(part, InputFile):
        stored: Item = {"type": "input_file"}
        for name in (*FILE_SOURCES, "filename", "detail"):
            if getattr(part, name) is not None:  # OpenAI's document: these are strings when present, never null
                stored[name] = getattr(part, name)
        return stored
    return {"type": "input_text", "text": _text_of(part)}


def _output_part(part: Any) -> Item:
    if isinstance(part, Refusal):
        return {"type": "refusal", "refusal": part.refusal}
    return {"type": "output_text", "text": _text_of(part), "annotations": [], "logprobs": []}


def check_calls(history: list[Item], items: list[Item]) -> None:
    """Every ``function_call_output`` answers a ``function_call`` before it (in this input or the chain)."""
    known = {item["call_id"] for item in history if item.get("type") == "function_call"}
    for index, item in enumerate(items):
        if item["type"] == "function_call":
            known.add(item["call_id"])
        elif item["type"] == "function_call_output" and item["call_id"] not in known:
            raise InvalidRequest(f"input[{index}].call_id",
                                 f"no function_call with call_id '{item['call_id'][:64]}' comes before this output "
                                 "(in this input or in the responses it continues)")


# --- items → chat messages ---------------------------------------------------------------------------------------


@dataclass
class Conversation:
    """The chat messages of a response's conversation, and for each media part in them the Responses field it
    came in (``input[1].content[2].file_id``), so that a refusal of the part names what the client wrote."""

    messages: list[dict[str, Any]]
    fields: list[dict[int, str]]  # per message: its media parts' fields, by the part's index

    def part_name(self, message: int, part: int, chat_field: str) -> str:
        """serving/media_parts.py's ``where``: the chat part's field as the Responses request names it."""
        known = self.fields[message].get(part) if message < len(self.fields) else None
        return known or message_part(message, part, chat_field)

    def without_oldest_turn(self) -> Conversation | None:
        kept = _after_oldest_turn(self.messages)
        if kept is None:
            return None
        return Conversation([self.messages[i] for i in kept], [self.fields[i] for i in kept])


def chat_messages(instructions: str | None, items: list[Item], origins: list[str] | None = None) -> Conversation:
    """The conversation of ``items``; ``origins[i]`` names item ``i`` (``input[3]``; for a stored response's items
    what responses.py makes of them), its parts named below it."""
    messages: list[dict[str, Any]] = []
    fields: list[dict[int, str]] = []
    if instructions:
        messages.append({"role": "system", "content": instructions})
        fields.append({})
    for index, item in enumerate(items):
        kind = item["type"]
        if kind == "message":
            message, named = _chat_message(item, origins[index] if origins else f"input[{index}]")
            messages.append(message)
            fields.append(named)
        elif kind == "function_call":
            call = {"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": item["arguments"]}}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)  # the text before it, or the calls beside it
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
                fields.append({})
        elif kind == "function_call_output":
            output = item["output"]
            text = output if isinstance(output, str) else "".join(p.get("text", "") for p in output)
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": text})
            fields.append({})
    return Conversation(messages, fields)


def _chat_message(item: Item, origin: str) -> tuple[dict[str, Any], dict[int, str]]:
    role = "system" if item["role"] == "developer" else item["role"]  # chat templates know "system"
    parts = item["content"]
    if role == "assistant" or all(part["type"] not in MEDIA_PARTS for part in parts):
        text = "".join(part.get("text", part.get("refusal", "")) for part in parts)
        return {"role": role, "content": text}, {}
    content, named = [], {}
    for index, part in enumerate(parts):
        if part["type"] in MEDIA_PARTS:
            chat_part, source = _chat_media_part(part)
            named[index] = f"{origin}.content[{index}].{source}"
            content.append(chat_part)
        else:
            content.append({"type": "text", "text": part.get("text", "")})
    return {"role": role, "content": content}, named


def _chat_media_part(part: Item) -> tuple[dict[str, Any], str]:
    """Chat's part for a stored ``input_image`` or ``input_file``, and the field its bytes come from."""
    if part["type"] == "input_image":
        detail = "high" if part.get("detail") == "original" else part.get("detail")  # chat's is low | high | auto
        if part.get("file_id"):
            return _image(f"{FILE_SCHEME}{part['file_id']}", detail), "file_id"
        return _image(part["image_url"], detail), "image_url"
    source = next(name for name in FILE_SOURCES if part.get(name) is not None)
    if source == "file_url":  # a URL is read as an image's is: media_url_allow decides, as it does for chat
        return _image(part["file_url"], part.get("detail")), source
    file: dict[str, Any] = {source: part[source]}
    if part.get("filename"):
        file["filename"] = part["filename"]
    return {"type": "file", "file": file}, source


def _image(url: str, detail: str | None) -> dict[str, Any]:
    image_url: dict[str, Any] = {"url": url}
    if detail is not None:
        image_url["detail"] = detail
    return {"type": "image_url", "image_url": image_url}


def chat_request(body: ResponseRequest, messages: list[dict[str, Any]], stream: bool) -> ChatRequest:
    """The chat completion that answers ``body`` (validated here too: the same checks a chat request gets)."""
    data: dict[str, Any] = {"model": body.model, "messages": messages, "stream": stream}
    for ours, theirs in (("temperature", "temperature"), ("top_p", "top_p"), ("max_output_tokens", "max_tokens"),
                         ("user", "user"), ("parallel_tool_calls", "parallel_tool_calls"), *VLLM_EXTRAS):
        value = getattr(body, ours)
        if value is not None:
            data[theirs] = value
    tools = [tool for tool in body.tools or [] if isinstance(tool, FunctionTool)]
    if tools:
        data["tools"] = [{"type": "function", "function": _function(tool)} for tool in tools]
    choice = body.tool_choice
    if isinstance(choice, FunctionChoice):
        data["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
    elif choice is not None and (tools or choice == "none"):
        data["tool_choice"] = choice
    text_format = body.text.format if body.text else None
    if isinstance(text_format, FormatJsonObject):
        data["response_format"] = {"type": "json_object"}
    elif isinstance(text_format, FormatJsonSchema):
        schema: dict[str, Any] = {"name": text_format.name, "schema": text_format.json_schema}
        if text_format.strict is not None:
            schema["strict"] = text_format.strict
        if text_format.description:
            schema["description"] = text_format.description
        data["response_format"] = {"type": "json_schema", "json_schema": schema}
    if stream:
        data["stream_options"] = {"include_usage": True}  # the usage of response.completed
    return ChatRequest.model_validate(data)


def _function(tool: FunctionTool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name,
                                "parameters": tool.parameters or {"type": "object", "properties": {}}}
    if tool.description:
        function["description"] = tool.description
    if tool.strict is not None:
        function["strict"] = tool.strict
    return function


def drop_oldest_turn(messages: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """``truncation: auto``: the messages without the oldest turn (the system messages in front stay, and the
    next kept message is a user's); None when only the last turn is left."""
    kept = _after_oldest_turn(messages)
    return None if kept is None else [messages[i] for i in kept]


def _after_oldest_turn(messages: list[dict[str, Any]]) -> list[int] | None:
    """The indices of the messages ``drop_oldest_turn`` keeps."""
    head = 0
    while head < len(messages) and messages[head]["role"] == "system":
        head += 1
    for cut in range(head + 1, len(messages)):
        if messages[cut]["role"] == "user":
            return [*range(head), *range(cut, len(messages))]
    return None


# --- the chat completion → output items ----------------------------------------------------------------------------


def output_of(completion: dict[str, Any], parallel_tool_calls: bool) -> tuple[list[Item], str | None]:
    """The output items of a chat completion, and its finish reason."""
    choice = (completion.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    finish = choice.get("finish_reason")
    status = "incomplete" if finish == "length" else "completed"
    output: list[Item] = []
    calls = message.get("tool_calls") or []
    if not parallel_tool_calls:
        calls = calls[:1]
    text = message.get("content")
    if text or not calls:
        output.append(text_item(item_id("message"), text or "", status))
    for call in calls:
        function = call.get("function") or {}
        output.append(call_item(item_id("function_call"), call.get("id") or new_id("call_"), function.get("name", ""),
                                function.get("arguments") or "", status))
    return output, finish


def text_item(message_id: str, text: str, status: str) -> Item:
    return {"type": "message", "id": message_id, "status": status, "role": "assistant",
            "content": [text_part(text)]}


def text_part(text: str) -> Item:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def call_item(fc_id: str, call_id: str, name: str, arguments: str, status: str) -> Item:
    return {"type": "function_call", "id": fc_id, "call_id": call_id, "name": name, "arguments": arguments,
            "status": status}


def usage_of(usage: dict[str, Any] | None) -> Item | None:
    """The chat usage as a Response's (``input_tokens``, ``output_tokens``, their details)."""
    if not usage:
        return None
    prompt, completion = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    cached = int(((usage.get("prompt_tokens_details") or {}).get("cached_tokens")) or 0)
    return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
            "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + completion}


def set_usage(response: dict[str, Any], usage: dict[str, Any] | None) -> None:
    """The Response's ``usage``: an object when the engine counted, absent otherwise (OpenAI's document has no
    null usage)."""
    counted = usage_of(usage)
    if counted is None:
        response.pop("usage", None)
    else:
        response["usage"] = counted


def ending(finish: str | None, failed: bool = False) -> tuple[str, Item | None]:
    """The Response's status and ``incomplete_details`` for the chat's finish reason."""
    if failed:
        return "failed", None
    if finish == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if finish == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
