"""The Responses API service: create, retrieve, delete, cancel and list input items, on the model's chat backend.

A response is one chat completion (serving/chat.py's ``complete``, so the
key's allow-list, its budget and one usage row per response come with it),
its input made of the request's items and, with ``previous_response_id``, of
the stored responses it continues (response_chat.py), its answer made into the
Response object or the event stream (response_events.py). Stored responses
live in the state DB (response_store.py): written whole once answered, before
the client sees the end of the answer; ``background`` ones are durable jobs
(response_jobs.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from appliance.catalogue import ModelEntry
from appliance.ids import new_id
from appliance.protocol.fields import field_path
from appliance.protocol.responses import (FormatJsonSchema, FunctionChoice, FunctionTool, InputItemsQuery,
                                          ResponseRequest, RetrieveQuery)
from appliance.serving.body import line_adapter, strip_line
from appliance.serving.chat import CHAT, complete
from appliance.serving.context import Call
from appliance.serving.errors import ApiError, ErrorCode, Reason, errors_to_details
from appliance.serving.metering import meter_of
from appliance.serving.models import resolve_model
from appliance.serving.response_chat import (Conversation, InvalidRequest, Item, chat_messages, chat_request,
                                             check_calls, dumps, ending, output_of, set_usage, stored_items)
from appliance.serving.response_events import EventStream
from appliance.serving.response_store import ACTIVE, FINISHED
from appliance.serving.streaming import SSE_HEADERS, Stream

log = logging.getLogger("appliance.responses")

ROUTE = "/oai/v1/responses"
# Tags of the request's tagged unions: they name no field a client wrote.
_TAGS = frozenset({"message", "function_call", "function_call_output", "unsupported", "function", "input_text",
                   "input_image", "input_file", "output_text", "refusal", "text", "json_object", "json_schema"})
# The chat request's fields as the Responses request calls them (an engine's refusal names the chat's).
_FIELDS = {"messages": "input", "max_tokens": "max_output_tokens", "response_format": "text.format",
           "tool_choice.function.name": "tool_choice.name"}


def jobs_of(call: Call) -> Any:
    """The gateway's ResponseJobs (store, writer, background runner), kept on the runtime."""
    return call.runtime.responses


# --- parsing -----------------------------------------------------------------------------------------------------


def parse_request(raw: bytes, line: bool = False) -> ResponseRequest:
    """The validated request (``line``: the ``body`` of a batch line); a mistake is a 400 naming its field."""
    try:
        if line:
            body: ResponseRequest = line_adapter(ResponseRequest).validate_json(raw).body
        else:
            body = ResponseRequest.model_validate_json(raw)
    except ValidationError as exc:
        errors = strip_line(exc.errors()) if line else exc.errors()
        raise _invalid([{**err, "loc": _client_loc(tuple(err.get("loc", ())))} for err in errors]) from None
    problem = body.problem()
    if problem is not None:
        raise InvalidRequest(*problem)
    return body


def _client_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """A location without the unions' tags: ``("input", 0, "function_call", "call_id")`` → ``input[0].call_id``."""
    kept = [part for index, part in enumerate(loc)
            if not (index > 0 and isinstance(part, str) and part in _TAGS and index + 1 < len(loc))]
    return tuple(kept)


def _invalid(errors: list[dict[str, Any]]) -> InvalidRequest:
    errors = [err for err in errors if not _other_branch(err, errors)]
    for err in errors:
        if err.get("type") == "union_tag_invalid":
            context = err.get("ctx") or {}
            err["msg"] = f"'{str(context.get('tag'))[:40]}' is not one of {context.get('expected_tags')}"
            err["loc"] = (*err["loc"], "type")
        elif err.get("type") == "union_tag_not_found":
            err["msg"] = "must be an object with a 'type'"
    details = errors_to_details(errors, _TAGS)
    first = details[0] if details else {"field": "body", "message": "invalid request"}
    error = InvalidRequest(first["field"], first["message"])
    more = len(details) - 1
    if more:
        error.message += f" (and {more} more)"
    error.details = details
    return error


def _other_branch(err: dict[str, Any], errors: list[dict[str, Any]]) -> bool:
    """An error of a union's branch the value did not take (``input`` is not a string: it is a list, whose
    items have errors of their own)."""
    path = field_path(err["loc"], _TAGS)
    return any(field_path(other["loc"], _TAGS).startswith((path + "[", path + ".")) for other in errors)


# --- preparing: the model, the conversation, the Response object -------------------------------------------------


@dataclass
class Prepared:
    """A request ready to run: its model, its own input items, the whole conversation, its Response object."""

    body: ResponseRequest
    entry: ModelEntry
    items: list[Item]
    conversation: Conversation
    response: dict[str, Any]


async def prepare(call: Call, body: ResponseRequest, response_id: str, created_at: int,
                  status: str = "in_progress") -> Prepared:
    entry = resolve_model(call, body.model, "chat")  # an unknown model, or one the key may not use: before all else
    items = stored_items(body)
    history, origins = await _history(call, body.previous_response_id) if body.previous_response_id else ([], [])
    check_calls(history, items)
    response = skeleton(body, entry, response_id, created_at, status)
    origins += [f"input[{index}]" for index in range(len(items))]
    return Prepared(body, entry, items, chat_messages(body.instructions, history + items, origins), response)


async def _history(call: Call, previous_id: str) -> tuple[list[Item], list[str]]:
    """The items of the responses ``previous_id`` continues, and of that response: inputs and outputs, in order;
    and each one's name (``resp_….input[1]``: a refusal of a part in it names that response's input)."""
    rows = await asyncio.to_thread(jobs_of(call).store.chain, previous_id, call.key.id)
    if rows is None:
        message = f"no response '{previous_id[:64]}' for this API key (never stored, deleted or expired)"
        raise ApiError(ErrorCode.NOT_FOUND, f"previous_response_id: {message}",
                       details=[{"field": "previous_response_id", "message": message}])
    last = rows[-1]
    if last.status in ACTIVE:
        raise InvalidRequest("previous_response_id", f"response '{previous_id}' is still {last.status}; continue it "
                                                     "once it has ended")
    items: list[Item] = []
    origins: list[str] = []
    for row in rows:
        given, output = json.loads(row.input_items), json.loads(row.body).get("output") or []
        items += given + output
        origins += [f"{row.id}.input[{index}]" for index in range(len(given))]
        origins += [f"{row.id}.output[{index}]" for index in range(len(output))]
    return items, origins


def skeleton(body: ResponseRequest, entry: ModelEntry, response_id: str, created_at: int,
             status: str) -> dict[str, Any]:
    """The Response object of ``body`` before it has output: what the request asked for, echoed."""
    text_format = body.text.format if body.text else None
    response: dict[str, Any] = {
        "id": response_id, "object": "response", "created_at": created_at, "status": status,
        "background": body.in_background, "completed_at": None, "error": None, "incomplete_details": None,
        "instructions": body.instructions, "max_output_tokens": body.max_output_tokens, "model": entry.slug,
        "output": [], "parallel_tool_calls": body.parallel_tool_calls is not False,
        "previous_response_id": body.previous_response_id, "reasoning": None, "store": body.stored,
        "temperature": body.temperature,
        "text": {"format": text_format.model_dump(by_alias=True, exclude_none=True) if text_format
                 else {"type": "text"}},
        "tool_choice": _choice(body), "tools": [_tool(tool) for tool in body.tools or []
                                                if isinstance(tool, FunctionTool)],
        "top_p": body.top_p, "truncation": body.truncation or "disabled", "metadata": body.metadata or {},
    }
    if isinstance(text_format, FormatJsonSchema):
        response["text"]["format"]["schema"] = text_format.json_schema
    if body.user is not None:
        response["user"] = body.user
    return response


def _choice(body: ResponseRequest) -> Any:
    choice = body.tool_choice
    if isinstance(choice, FunctionChoice):
        return {"type": "function", "name": choice.name}
    return choice or "auto"


def _tool(tool: FunctionTool) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "function", "name": tool.name, "parameters": tool.parameters,
                           "strict": tool.strict}
    if tool.description is not None:
        out["description"] = tool.description
    return out


def stored_row(call: Call, prepared: Prepared, response: dict[str, Any], **job: Any) -> dict[str, Any]:
    """The DB row of a response (``job``: a background job's own columns)."""
    body = prepared.body
    return {"id": response["id"], "key_id": call.key.id, "model": prepared.entry.slug, "status": response["status"],
            "background": body.in_background, "stream": body.in_background and body.streamed,
            "previous_response_id": body.previous_response_id,
            "created_at": datetime.fromtimestamp(response["created_at"], UTC), "input_items": dumps(prepared.items),
            "body": dumps(response), "request": None, "owner": None, "claimed_at": None, "attempts": 0, **job}


# --- running it on the chat backend ------------------------------------------------------------------------------


async def run_chat(call: Call, prepared: Prepared, stream: bool) -> bytes | Stream:
    """The chat completion of the prepared response (``truncation: auto``: shortened until it fits)."""
    body, conversation = prepared.body, prepared.conversation
    while True:
        try:
            chat = chat_request(body, conversation.messages, stream)
        except ValidationError as exc:  # what the Responses request allows and a chat request does not
            raise _invalid([{**err, "loc": _chat_loc(tuple(err.get("loc", ())))} for err in exc.errors()]) from None
        try:
            return await complete(call, CHAT, chat, part_names=conversation.part_name)
        except ApiError as exc:
            if exc.code != ErrorCode.VALIDATION_ERROR:
                raise _from_history(exc) from None
            shorter = None
            if body.truncation == "auto" and _over_the_window(exc):
                shorter = conversation.without_oldest_turn()
            if shorter is None:
                raise _from_history(_renamed(exc)) from None
        await release_reservation(call)
        conversation = shorter


def _chat_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Where in the Responses request a chat request's field came from (``messages`` are the input)."""
    if loc[:1] == ("messages",):
        return ("input",)
    return (_FIELDS.get(str(loc[0]), loc[0]), *loc[1:]) if loc else loc


def _over_the_window(error: ApiError) -> bool:
    return error.reason is Reason.CONTEXT_LENGTH_EXCEEDED


def _renamed(error: ApiError) -> InvalidRequest:
    """The engine's refusal of the chat request, naming the Responses request's field."""
    given = error.details[0]["field"] if error.details else "body"
    field = _FIELDS.get(given, given)
    if field.startswith("tools[") and ".function." in field:
        field = field.replace(".function.", ".")
    message = error.details[0]["message"] if error.details else error.message
    if given == "messages" and field != given:  # the chat's words ("your messages …") in the request's own
        message = message.replace("messages", field)
    renamed = InvalidRequest(field, message)
    renamed.reason = error.reason  # context_length_exceeded stays what it is
    return renamed


def _from_history(error: ApiError) -> ApiError:
    """A refused part of a stored response this one continues (``resp_….input[1].content[0].file_id``): the
    request's field is ``previous_response_id``; the message says which part of which response."""
    if not error.details or not str(error.details[0].get("field", "")).startswith("resp_"):
        return error
    given = error.details[0]["field"]
    response_id, _, part = given.partition(".")
    message = (f"{part} of response {response_id} (which this one continues): "
               f"{error.details[0].get('message') or error.message}")
    error.message = f"previous_response_id: {message}"
    error.details = [{"field": "previous_response_id", "message": message}]
    return error


async def release_reservation(call: Call) -> None:
    """Give back the budget a refused attempt reserved, before the next attempt reserves its own."""
    meter = meter_of(call)
    if meter.reservation is not None:
        reservation, meter.reservation = meter.reservation, None
        await asyncio.to_thread(call.runtime.accounting.budgets.settle, reservation, 0.0)


def finished(response: dict[str, Any], answer: bytes) -> dict[str, Any]:
    """The Response once the chat completion ``answer`` came: its output, status and usage."""
    completion = json.loads(answer)
    output, finish = output_of(completion, response["parallel_tool_calls"])
    status, details = ending(finish)
    response.update(output=output, status=status, incomplete_details=details)
    set_usage(response, completion.get("usage"))
    if status == "completed":
        response["completed_at"] = int(time.time())
    return response


async def commit(call: Call, row: dict[str, Any]) -> None:
    """Store a finished response; the caller's answer ends only once it is in the DB."""
    try:
        await jobs_of(call).writer.submit(row)
    except Exception:  # the answer stands; only its continuation by previous_response_id will not find it
        log.exception("response %s was answered but could not be stored", row["id"])


# --- the operations ----------------------------------------------------------------------------------------------


async def create(call: Call, body: ResponseRequest) -> bytes | Stream:
    """POST /responses: the Response (or its event stream); in the background, the queued Response at once."""
    created_at = int(time.time())
    response_id = new_id("resp_", 48)
    if body.in_background:
        return await jobs_of(call).submit(call, body, response_id, created_at)
    prepared = await prepare(call, body, response_id, created_at)
    result = await run_chat(call, prepared, body.streamed)
    if isinstance(result, Stream):
        return Stream(_streamed(call, prepared, result), "text/event-stream", SSE_HEADERS)
    response = finished(prepared.response, result)
    if body.stored:
        await commit(call, stored_row(call, prepared, response))
    return dumps(response).encode()


async def _streamed(call: Call, prepared: Prepared, upstream: Stream) -> AsyncIterator[bytes]:
    events = EventStream(prepared.response, parallel_tool_calls=prepared.response["parallel_tool_calls"])
    events.lifecycle("response.created")
    events.lifecycle("response.in_progress")
    yield events.take()
    failure = None
    async with contextlib.aclosing(upstream.chunks) as chunks:  # type: ignore[type-var]
        async for data in chunks:
            failure = events.feed_frames(data)
            if events.frames:
                yield events.take()
            if failure is not None:
                break
    if failure is None:
        events.complete(int(time.time()))
    else:
        events.fail("server_error", failure)
    if prepared.body.stored:
        await commit(call, stored_row(call, prepared, events.response))
    yield events.take()


async def answer_line(call: Call, body: ResponseRequest) -> bytes:
    """A batch line of url ``/v1/responses``: answered (and stored) as a live request is."""
    answer = await create(call, body)
    assert isinstance(answer, bytes)  # neither streamed nor in the background: refused when the line was read
    return answer


async def _own(call: Call, response_id: str) -> Any:
    row = await asyncio.to_thread(jobs_of(call).store.get, response_id, call.key.id)
    if row is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"No response '{response_id[:80]}' for this API key.",
                       details=[{"field": "response_id", "message": "not found"}])
    return row


async def retrieve(call: Call, response_id: str, query: RetrieveQuery) -> bytes | Stream:
    """GET /responses/{id}: the Response as stored; ``stream``: its events (after ``starting_after``)."""
    row = await _own(call, response_id)
    if not query.stream:
        return row.body.encode()  # type: ignore[no-any-return]
    if not row.stream:
        raise InvalidRequest("stream", "only a response created with background and stream true keeps its events; "
                                       "retrieve this one without stream")
    after = -1 if query.starting_after is None else query.starting_after
    return Stream(jobs_of(call).follow(response_id, after), "text/event-stream", SSE_HEADERS)


async def delete(call: Call, response_id: str) -> bytes:
    """DELETE /responses/{id}: gone, with its events; a running background job stops."""
    jobs = jobs_of(call)
    if not await asyncio.to_thread(jobs.store.delete, response_id, call.key.id):
        raise ApiError(ErrorCode.NOT_FOUND, f"No response '{response_id[:80]}' for this API key.",
                       details=[{"field": "response_id", "message": "not found"}])
    jobs.stop(response_id)
    return dumps({"id": response_id, "object": "response", "deleted": True}).encode()


async def cancel(call: Call, response_id: str) -> bytes:
    """POST /responses/{id}/cancel: a queued or running background response stops and is ``cancelled``."""
    jobs = jobs_of(call)
    row = await _own(call, response_id)
    if not row.background:
        raise InvalidRequest("response_id", "only a response created with background true can be cancelled")
    if row.status == "cancelled":
        return row.body.encode()  # type: ignore[no-any-return]
    if row.status in FINISHED:
        raise InvalidRequest("response_id", f"the response has already ended (status '{row.status}'); only a queued "
                                            "or in-progress response can be cancelled")
    response = json.loads(row.body)
    response["status"] = "cancelled"
    if not await asyncio.to_thread(jobs.store.cancel, response_id, dumps(response)):
        row = await _own(call, response_id)  # it ended just now
        if row.status == "cancelled":
            return row.body.encode()  # type: ignore[no-any-return]
        raise InvalidRequest("response_id", f"the response has already ended (status '{row.status}')")
    jobs.stop(response_id)
    return dumps(response).encode()


async def input_items(call: Call, response_id: str, query: InputItemsQuery) -> bytes:
    """GET /responses/{id}/input_items: the items the request gave (newest first unless ``order=asc``)."""
    row = await _own(call, response_id)
    items: list[Item] = json.loads(row.input_items)
    if query.order == "desc":
        items.reverse()
    if query.after is not None:
        ids = [item.get("id") for item in items]
        if query.after not in ids:
            raise InvalidRequest("after", f"no input item '{query.after[:80]}' in this response")
        items = items[ids.index(query.after) + 1:]
    page = items[:query.limit]
    return dumps({"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                  "last_id": page[-1]["id"] if page else None, "has_more": len(items) > len(page)}).encode()
