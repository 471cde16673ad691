"""The chat and generate service: check the request, shape the engine's payload, map its refusals.

The worker is vLLM's OpenAI server (or the transformers worker speaking the
same protocol); the gateway checks what it can without a tokenizer and turns
the engine's refusals (a prompt over the context window, too many tokens) into
VALIDATION_ERRORs that name the client's field.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from appliance.accounting.units import apply_usage, completion_bound, output_bound, read_usage
from appliance.catalogue import ModelEntry
from appliance.engines.registry import engine_spec
from appliance.protocol.chat import PART_TYPES, ROLES, ChatRequest, CompletionRequest, TokenizeRequest, TokenizeResponse
from appliance.protocol.sampling import SamplingFields
from appliance.serving.admission import BACKGROUND_PRIORITY
from appliance.serving.answers import clean_answer, cleaned
from appliance.serving.body import line_adapter, strip_line
from appliance.serving.context import Call
from appliance.serving.errors import ApiError, ErrorCode, Reason, context_length_exceeded, from_errors, \
    validation_error
from appliance.serving.input_size import check_texts, check_total
from appliance.serving.media_parts import PartNames, check_chat, message_part
from appliance.serving.metering import budgeted, reserve
from appliance.serving.models import resolve_model
from appliance.serving.relay import post_json
from appliance.serving.stream_usage import usage_tap, with_engine_usage
from appliance.serving.streaming import Stream, relay_sse

log = logging.getLogger("appliance.serving.chat")

# Discriminator tags pydantic puts into an error's location; a client knows only the field names.
_TAGS = set(ROLES) | set(PART_TYPES)


@dataclass(frozen=True)
class Kind:
    """Chat or generate: the request model, the worker's path, and the field that holds the prompt."""

    request_model: type[SamplingFields]
    path: str
    prompt_field: str

    @property
    def line_adapter(self) -> TypeAdapter[Any]:
        return line_adapter(self.request_model)


CHAT = Kind(ChatRequest, "/chat/completions", "messages")
GENERATE = Kind(CompletionRequest, "/completions", "prompt")


def parse_request(raw: bytes, kind: Kind, line: bool = False) -> SamplingFields:
    """The validated request (``line``: the body of a batch line, validated from the whole line in one pass);
    every mistake a VALIDATION_ERROR naming its field (``messages[2].role``)."""
    try:
        body = kind.line_adapter.validate_json(raw).body if line else kind.request_model.model_validate_json(raw)
    except ValidationError as exc:
        errors = []
        for err in strip_line(exc.errors()) if line else exc.errors():
            loc = tuple(err.get("loc", ()))
            if err.get("type") in ("union_tag_invalid", "union_tag_not_found"):
                part = "content" in loc  # a content part's type, else a message's role
                err = {**err, "msg": f"type must be one of {', '.join(PART_TYPES)}" if part else
                       f"role must be one of {', '.join(ROLES)}"}
                loc += ("type",) if part else ("role",)
            errors.append({**err, "loc": loc})
        raise from_errors(errors, _TAGS) from None
    if isinstance(body, ChatRequest):
        problem = body.tool_problem()
        if problem is not None:
            raise validation_error(*problem)
    return body


def schedules_by_priority(entry: ModelEntry) -> bool:
    """Does the model's engine take vLLM's per-request ``priority``? A local vLLM does (the launcher starts it
    with ``--scheduling-policy priority`` unless the catalogue says otherwise); a remote one only if its entry
    says so (a server without that policy refuses any priority but 0)."""
    options = entry.engine_options
    if entry.engine == "vllm":
        return options.get("scheduling_policy", "priority") == "priority"
    return entry.engine == "remote" and bool(options.get("priority_scheduling"))


def engine_payload(body: SamplingFields, entry: ModelEntry, bounded: bool = False, priority: int = 0) -> bytes:
    """What the worker gets: the served slug, ``max_tokens`` capped at the model's limit, no metadata.

    ``bounded`` (the key has a token budget): ``max_tokens`` is always set, to the
    output bound the reservation counted on, so the engine cannot use more. A
    stream always asks the engine for its usage. ``priority`` (larger: later) goes
    to engines that schedule by it; live requests keep vLLM's default 0.
    """
    data = body.model_dump(exclude_none=True, exclude={"metadata"})
    data["model"] = entry.served_model
    if priority and schedules_by_priority(entry):
        data["priority"] = priority
    cap = entry.max_output_tokens
    if cap is not None and isinstance(body, ChatRequest):
        data["max_tokens"] = min(body.max_tokens or cap, cap)
    elif cap is not None and body.max_tokens is not None:
        data["max_tokens"] = min(body.max_tokens, cap)
    if bounded and "max_tokens" not in data:
        data["max_tokens"] = output_bound(body.max_tokens, entry)
    if body.stream:
        data = with_engine_usage(data)
    return json.dumps(data, separators=(",", ":")).encode()


def _check_size(body: SamplingFields, entry: ModelEntry) -> None:
    """Refuse, before any engine tokenizes it, a prompt far longer than the model's window (serving/input_size)."""
    if isinstance(body, ChatRequest):
        texts = [message.content if isinstance(message.content, str) else
                 "".join(getattr(part, "text", "") for part in message.content or []) for message in body.messages]
        check_total(entry, sum(len(text.encode()) for text in texts), "messages")
    elif isinstance(body, CompletionRequest) and isinstance(body.prompt, str):
        check_total(entry, len(body.prompt.encode()), "prompt")
    elif isinstance(body, CompletionRequest) and body.prompt and isinstance(body.prompt[0], str):
        check_texts(entry, body.prompt, "prompt")  # type: ignore[arg-type]


async def token_bound(call: Call, body: SamplingFields, entry: ModelEntry, media_tokens: int = 0) -> int:
    """The most tokens this request can use: the engine's count of the prompt when it gives one (vLLM's
    /tokenize), the byte bound of accounting/units.py otherwise; plus ``media_tokens`` (its images and sounds,
    not in ``body``) and the output bound, within the window."""
    prompt = body.prompt if isinstance(body, CompletionRequest) else None
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], int):
        return completion_bound(None, prompt, None, body.max_tokens, entry)  # token ids: already exact
    counted = await _engine_count(call, body, entry)
    if counted is not None:
        total = counted + media_tokens + output_bound(body.max_tokens, entry)
    elif isinstance(body, ChatRequest):
        messages = [message.model_dump(exclude_none=True) for message in body.messages]
        tools = [tool.model_dump(exclude_none=True) for tool in body.tools or []]
        total = completion_bound(messages, None, tools, body.max_tokens, entry) + media_tokens
    else:
        return completion_bound(None, prompt, None, body.max_tokens, entry)
    return min(total, entry.context_window) if entry.context_window else total


async def _engine_count(call: Call, body: SamplingFields, entry: ModelEntry) -> int | None:
    if isinstance(body, ChatRequest):
        ask = TokenizeRequest(model=entry.served_model, messages=body.messages, tools=body.tools)
    elif isinstance(body, CompletionRequest) and isinstance(body.prompt, str | list):
        texts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        if len(texts) != 1:
            return None
        ask = TokenizeRequest(model=entry.served_model, prompt=str(texts[0]))
    else:
        return None
    try:
        answer = await post_json(call, entry, "/tokenize", ask.model_dump_json(exclude_none=True).encode(),
                                 at_root=True, admit=False)  # vLLM serves it beside /v1; light: no slot taken
        return TokenizeResponse.model_validate_json(answer).count
    except (ApiError, ValidationError) as exc:
        if isinstance(exc, ApiError) and exc.code in (ErrorCode.MODEL_UNAVAILABLE, ErrorCode.BACKEND_TIMEOUT):
            raise
        return None  # an engine without /tokenize (a remote server), or a prompt it refuses: the byte bound


# The numbers in an engine's context-window refusal: vLLM's ("maximum context length is 2048 tokens. However,
# your prompt contains at least 2049 input tokens") and the transformers worker's (OpenAI's wording: "you requested
# 8025 tokens (7513 in the messages, 512 in the completion)").
_LIMIT = re.compile(r"maximum context length is (\d+) tokens")
_PROMPT = re.compile(r"contains (at least )?(\d+) input tokens|resulted in (at least )?(\d+) tokens|"
                     r"\((\d+) in the \w+, (\d+) in the completion\)")


def context_numbers(message: str) -> tuple[int | None, int | None, int | None, bool]:
    """The limit, the prompt's tokens, the completion's tokens and whether the prompt count is a lower bound."""
    limit = _LIMIT.search(message)
    found = _PROMPT.search(message)
    prompt = completion = None
    at_least = False
    if found:
        if found.group(2) or found.group(4):
            at_least = bool(found.group(1) or found.group(3))
            prompt = int(found.group(2) or found.group(4))
        else:
            prompt, completion = int(found.group(5)), int(found.group(6))
    return (int(limit.group(1)) if limit else None), prompt, completion, at_least


def refine(kind: Kind, entry: ModelEntry) -> Any:
    """Name the client's field in the engine's refusal (vLLM says ``input_tokens``; the client sent messages); an
    over-long prompt becomes ``context_length_exceeded``, with the model's limit and the prompt's length."""

    def refined(error: ApiError) -> ApiError:
        if error.code != ErrorCode.VALIDATION_ERROR:
            return error
        given = error.details[0]["field"] if error.details else "body"
        text = error.message.lower()
        if error.reason is Reason.CONTEXT_LENGTH_EXCEEDED or given in ("input_tokens", "input_text") \
                or "maximum context length" in text:
            limit, prompt, completion, at_least = context_numbers(error.message)
            return context_length_exceeded(kind.prompt_field, limit or entry.context_window, prompt, completion,
                                           at_least)
        if given in ("body", "") and "max_tokens" in text:
            field, message = "max_tokens", error.message
        elif given in ("body", "") and "out of vocabulary" in text:  # vLLM: a prompt's token id
            field, message = kind.prompt_field, error.message
        else:
            field, message = given, error.message
        if message.startswith(f"{field}: "):
            message = message[len(field) + 2:]
        return ApiError(ErrorCode.VALIDATION_ERROR, f"{field}: {message}", details=[{"field": field,
                                                                                     "message": message}])

    return refined


async def complete(call: Call, kind: Kind, body: SamplingFields, priority: int = 0,
                   part_names: PartNames = message_part) -> bytes | Stream:
    """The chat or generate service: the engine's answer whole (its OpenAI JSON), or its event stream.

    A batch line comes with a ``priority`` that lets live requests go first, and a background response gets the
    same; a live call carries the one its admission gave it (serving/admission.py), so the payload is made once
    the call is admitted. ``part_names`` names a message's content part in errors (the Responses API: its own
    input's names).
    """
    entry, meter, payload, named = await _prepare(call, kind, body, priority, part_names)

    def refined(error: ApiError) -> ApiError:
        return named(refine(kind, entry)(error))

    if body.stream:
        asked = bool(body.stream_options and body.stream_options.include_usage)  # type: ignore[attr-defined]
        count, remote = usage_tap(call, asked), not engine_spec(entry.engine).local  # any server: every frame parsed
        return await relay_sse(call, entry, kind.path, payload, refined,
                               tap=lambda frames: count(cleaned(frames, thorough=remote)))
    try:
        answer = await post_json(call, entry, kind.path, payload)
    except ApiError as exc:
        raise refined(exc) from None
    apply_usage(meter.units, read_usage(answer))
    return clean_answer(answer)


async def _prepare(call: Call, kind: Kind, body: SamplingFields, priority: int, part_names: PartNames
                   ) -> tuple[ModelEntry, Any, Callable[[], bytes], Callable[[ApiError], ApiError]]:
    """Resolve the model, log the metadata, check the media (serving/media_parts), reserve the budget and shape the
    engine's payload (made once the call is admitted, with the priority it was given); and how to name a part in
    the engine's refusal."""
    entry = resolve_model(call, body.model, "chat")
    _check_size(body, entry)
    if body.metadata:
        log.info("request %s to %s: metadata %s", call.request_id, entry.slug,
                 json.dumps(body.metadata, separators=(",", ":"))[:2000])
    counted, media_tokens, named = body, 0, _as_is
    if isinstance(body, ChatRequest):
        checked = await check_chat(call, body, entry, part_names)
        body, counted, media_tokens = checked.body, checked.text_only, checked.tokens
        named = checked.media.name_refusal if checked.media is not None else _as_is
    bound = await token_bound(call, counted, entry, media_tokens) if budgeted(call) else 0
    meter = await reserve(call, "tokens", bound, entry)
    bounded = meter.reservation is not None
    if not priority and call.background:
        priority = BACKGROUND_PRIORITY

    def payload() -> bytes:
        return engine_payload(body, entry, bounded, priority or call.fields.get("priority", 0))

    return entry, meter, payload, named


def _as_is(error: ApiError) -> ApiError:
    return error
