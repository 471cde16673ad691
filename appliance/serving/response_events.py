"""A streamed chat completion as the Responses API's event stream, each event numbered by ``sequence_number``.

Per chunk of the chat stream: text becomes ``response.output_text.delta`` of
one message item (opened with ``response.output_item.added`` and
``response.content_part.added``), each tool call a ``function_call`` item with
``response.function_call_arguments.delta``; at the end every open item is
closed (``….done``) and the lifecycle event says how the response ended. The
deltas, one per token, are made from byte templates rather than a model's
dump (a test holds them equal to protocol/responses.py's models).
"""

from __future__ import annotations

import json
from typing import Any

from appliance.ids import new_id
from appliance.serving.response_chat import call_item, dumps, ending, item_id, set_usage, text_item, text_part

TERMINAL = (b"event: response.completed", b"event: response.incomplete", b"event: response.failed")


def _json(value: str) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


class EventStream:
    """The events of one response, from ``seq`` on; ``response`` is the Response object they build up."""

    def __init__(self, response: dict[str, Any], seq: int = 0, parallel_tool_calls: bool = True) -> None:
        self.response = response
        self.seq = seq
        self.parallel_tool_calls = parallel_tool_calls
        self.frames: list[bytes] = []  # made, not yet taken
        self.finish: str | None = None
        self.usage: dict[str, Any] | None = None
        self._text: dict[str, Any] | None = None  # the message item being written
        self._calls: dict[int, dict[str, Any]] = {}  # the function_call items being written, by the chat's index

    @property
    def output(self) -> list[dict[str, Any]]:
        return self.response["output"]  # type: ignore[no-any-return]

    def take(self) -> bytes:
        """The frames made since the last take, as one chunk."""
        out, self.frames = b"".join(self.frames), []
        return out

    def take_numbered(self) -> list[tuple[int, bytes]]:
        """The frames made since the last take, each with its sequence number."""
        frames, self.frames = self.frames, []
        first = self.seq - len(frames)
        return [(first + offset, frame) for offset, frame in enumerate(frames)]

    def event(self, kind: str, fields: dict[str, Any]) -> None:
        data = {"type": kind, **fields, "sequence_number": self.seq}
        self.seq += 1
        self.frames.append(b"event: " + kind.encode() + b"\ndata: " + dumps(data).encode() + b"\n\n")

    def lifecycle(self, kind: str) -> None:
        """``response.created``, ``.queued``, ``.in_progress``, ``.completed``, …: the whole Response as it is now."""
        self.event(kind, {"response": self.response})

    # --- the chat stream in ----------------------------------------------------------------------------------

    def feed_frames(self, data: bytes) -> str | None:
        """One chunk of the chat stream's SSE frames; the message of an error frame, if the stream failed."""
        for frame in data.split(b"\n\n"):
            if frame.startswith(b"data: {"):
                self.feed(json.loads(frame[6:]))
            elif frame.startswith(b"event: error"):
                return _error_message(frame)
        return None

    def feed(self, chunk: dict[str, Any]) -> None:
        usage = chunk.get("usage")
        if usage:
            self.usage = usage
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if text:
                self._text_delta(text)
            for call in delta.get("tool_calls") or ():
                self._call_delta(call)
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]

    def _text_delta(self, text: str) -> None:
        item = self._text
        if item is None:
            item = self._open_text()
        item["pieces"].append(text)
        self.frames.append(item["prefix"] + _json(text) + b',"logprobs":[],"sequence_number":'
                           + str(self.seq).encode() + b"}\n\n")
        self.seq += 1

    def _open_text(self) -> dict[str, Any]:
        index, message_id = len(self.output), item_id("message")
        self.output.append(text_item(message_id, "", "in_progress"))
        added = {**self.output[index], "content": []}
        self.event("response.output_item.added", {"output_index": index, "item": added})
        self.event("response.content_part.added", {"item_id": message_id, "output_index": index, "content_index": 0,
                                                   "part": text_part("")})
        prefix = (b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","item_id":"'
                  + message_id.encode() + b'","output_index":' + str(index).encode()
                  + b',"content_index":0,"delta":')
        self._text = {"index": index, "id": message_id, "pieces": [], "prefix": prefix}
        return self._text

    def _call_delta(self, call: dict[str, Any]) -> None:
        position = int(call.get("index") or 0)
        if not self.parallel_tool_calls and position > 0:
            return  # one call at most: the rest are dropped, as the whole answer's are
        function = call.get("function") or {}
        item = self._calls.get(position)
        if item is None:
            self._close_text()
            self._close_calls()  # the call before this one is whole: each item ends before the next begins
            index, fc_id = len(self.output), item_id("function_call")
            name = function.get("name") or ""
            self.output.append(call_item(fc_id, call.get("id") or new_id("call_"), name, "", "in_progress"))
            self.event("response.output_item.added", {"output_index": index, "item": dict(self.output[index])})
            prefix = (b'event: response.function_call_arguments.delta\ndata: {"type":'
                      b'"response.function_call_arguments.delta","item_id":"' + fc_id.encode()
                      + b'","output_index":' + str(index).encode() + b',"delta":')
            item = self._calls[position] = {"index": index, "id": fc_id, "pieces": [], "prefix": prefix}
        elif function.get("name"):
            self.output[item["index"]]["name"] += function["name"]
        arguments = function.get("arguments")
        if arguments:
            item["pieces"].append(arguments)
            self.frames.append(item["prefix"] + _json(arguments) + b',"sequence_number":' + str(self.seq).encode()
                               + b"}\n\n")
            self.seq += 1

    # --- closing ---------------------------------------------------------------------------------------------

    def _item_status(self) -> str:
        return "incomplete" if self.finish == "length" else "completed"

    def _close_text(self) -> None:
        item, self._text = self._text, None
        if item is None:
            return
        index, text = item["index"], "".join(item["pieces"])
        done = text_item(item["id"], text, self._item_status())
        self.output[index] = done
        where = {"item_id": item["id"], "output_index": index, "content_index": 0}
        self.event("response.output_text.done", {**where, "text": text, "logprobs": []})
        self.event("response.content_part.done", {**where, "part": text_part(text)})
        self.event("response.output_item.done", {"output_index": index, "item": done})

    def _close_calls(self) -> None:
        for item in sorted(self._calls.values(), key=lambda one: one["index"]):
            if item.get("closed"):
                continue
            item["closed"] = True
            index = item["index"]
            done = {**self.output[index], "arguments": "".join(item["pieces"]), "status": self._item_status()}
            self.output[index] = done
            self.event("response.function_call_arguments.done", {"item_id": item["id"], "name": done["name"],
                                                                 "output_index": index,
                                                                 "arguments": done["arguments"]})
            self.event("response.output_item.done", {"output_index": index, "item": done})

    def complete(self, completed_at: int) -> None:
        """The chat stream ended: close what is open, and end with ``response.completed`` or ``.incomplete``."""
        if not self.output:  # an empty answer is still one (empty) message, as the whole answer's is
            self._open_text()
        self._close_text()
        self._close_calls()
        status, details = ending(self.finish)
        self.response.update(status=status, incomplete_details=details)
        set_usage(self.response, self.usage)
        if status == "completed":
            self.response["completed_at"] = completed_at
        self.lifecycle(f"response.{status}")

    def fail(self, code: str, message: str) -> None:
        """The chat stream broke off: what was written is kept (``incomplete``), an ``error`` event says why, and
        ``response.failed`` ends the stream."""
        self.finish = "length" if self.finish is None else self.finish  # the open items did not end
        self._close_text()
        self._close_calls()
        self.event("error", {"code": code, "message": message, "param": None})
        self.response.update(status="failed", error={"code": code, "message": message})
        set_usage(self.response, self.usage)
        self.lifecycle("response.failed")


def _error_message(frame: bytes) -> str:
    try:
        data = json.loads(frame.split(b"data: ", 1)[-1])
    except ValueError:
        return "The model's backend failed while streaming."
    error = data.get("error", data) if isinstance(data, dict) else {}
    return str(error.get("message") or "The model's backend failed while streaming.")
