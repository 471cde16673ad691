"""Chat and generate, between the route and the worker: check the request, shape the payload, map refusals.

The worker is vLLM's OpenAI server (or the transformers worker speaking the
same protocol); the gateway checks what it can without a tokenizer and turns
the engine's refusals (a prompt over the context window, too many tokens) into
VALIDATION_ERRORs that name the client's field.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response
from pydantic import ValidationError

from appliance.catalogue import ModelEntry
from appliance.db.keys import ApiKey
from appliance.gateway.body import json_body
from appliance.gateway.errors import ApiError, ErrorCode, from_errors, ok_raw, request_id_of, validation_error
from appliance.gateway.relay import backend, post_json, resolve_model
from appliance.gateway.sse import relay_sse
from appliance.protocol.chat import ROLES, ChatRequest, CompletionRequest
from appliance.protocol.sampling import SamplingFields

log = logging.getLogger("appliance.gateway.chat")

# Discriminator tags pydantic puts into an error's location; a client knows only the field names.
_TAGS = set(ROLES) | {"text", "image_url"}


@dataclass(frozen=True)
class Kind:
    """Chat or generate: the request model, the worker's path, and the field that holds the prompt."""

    request_model: type[SamplingFields]
    path: str
    prompt_field: str


CHAT = Kind(ChatRequest, "/v1/chat/completions", "messages")
GENERATE = Kind(CompletionRequest, "/v1/completions", "prompt")


def parse_request(raw: bytes, kind: Kind) -> SamplingFields:
    """The validated request; every mistake a VALIDATION_ERROR naming its field (``messages[2].role``)."""
    try:
        body = kind.request_model.model_validate_json(raw)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            loc = tuple(err.get("loc", ()))
            if err.get("type") in ("union_tag_invalid", "union_tag_not_found"):
                err = {**err, "msg": f"role must be one of {', '.join(ROLES)}"}
                loc += ("role",)
            errors.append({**err, "loc": loc})
        raise from_errors(errors, _TAGS) from None
    if isinstance(body, ChatRequest):
        problem = body.tool_problem()
        if problem is not None:
            raise validation_error(*problem)
    return body


def engine_payload(body: SamplingFields, entry: ModelEntry) -> bytes:
    """What the worker gets: the served slug, ``max_tokens`` capped at the model's limit, no metadata."""
    data = body.model_dump(exclude_none=True, exclude={"metadata"})
    data["model"] = entry.slug
    cap = entry.max_output_tokens
    if cap is not None and isinstance(body, ChatRequest):
        data["max_tokens"] = min(body.max_tokens or cap, cap)
    elif cap is not None and body.max_tokens is not None:
        data["max_tokens"] = min(body.max_tokens, cap)
    return json.dumps(data, separators=(",", ":")).encode()


def refine(kind: Kind, entry: ModelEntry) -> Any:
    """Name the client's field in the engine's refusal (vLLM says ``input_tokens``; the client sent messages)."""

    def refined(error: ApiError) -> ApiError:
        if error.code != ErrorCode.VALIDATION_ERROR:
            return error
        given = error.details[0]["field"] if error.details else "body"
        text = error.message.lower()
        if given in ("input_tokens", "prompt", "messages") or "maximum context length" in text:
            field = kind.prompt_field
            window = f" of {entry.context_window} tokens" if entry.context_window else ""
            message = f"too long for the model's context window{window}: {error.message}"
        elif given in ("body", "") and "max_tokens" in text:
            field, message = "max_tokens", error.message
        elif given in ("body", "") and "out of vocabulary" in text:  # vLLM: a prompt's token id
            field, message = kind.prompt_field, error.message
        else:
            field, message = given, error.message
        return ApiError(ErrorCode.VALIDATION_ERROR, f"{field}: {message}", details=[{"field": field,
                                                                                     "message": message}])

    return refined


async def complete(request: Request, key: ApiKey, kind: Kind, enveloped: bool) -> Response:
    """Answer one chat or generate request, streamed or whole."""
    body = parse_request(await json_body(request), kind)
    entry = resolve_model(request, key, body.model, "chat")
    if body.metadata:
        log.info("request %s to %s: metadata %s", request_id_of(request), entry.slug,
                 json.dumps(body.metadata, separators=(",", ":"))[:2000])
    payload = engine_payload(body, entry)
    on_error = refine(kind, entry)
    if body.stream:
        return await relay_sse(request, entry, kind.path, payload, on_error)
    async with backend(request, entry) as worker:
        try:
            answer = await post_json(request, worker, kind.path, payload)
        except ApiError as exc:
            raise on_error(exc) from None
    return ok_raw(answer, request) if enveloped else Response(answer, media_type="application/json")

