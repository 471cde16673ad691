"""Chat and generate: /v1/inference/chat and /generate (enveloped), /oai/v1/chat/completions and /completions."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Response

from appliance.tenancy.caller import Caller
from appliance.gateway.auth import require
from appliance.gateway.body import json_body
from appliance.gateway.calls import call_of, respond
from appliance.gateway.openapi import INFERENCE, SSE, Envelope, documented, json_ok, json_request
from appliance.gateway.routing import api_router
from appliance.protocol.chat import ChatCompletion, ChatRequest, Completion, CompletionRequest
from appliance.serving.chat import CHAT, GENERATE, Kind, complete, parse_request

router = api_router(metered=True)

Key = Annotated[Caller, Depends(require("models:use"))]


async def _complete(request: Request, key: Caller, kind: Kind) -> Response:
    call = call_of(request, key)
    return respond(call, request, await complete(call, kind, parse_request(await json_body(request), kind)))


@router.post("/v1/inference/chat", **documented(
    body=json_request(ChatRequest), ok=json_ok(Envelope[ChatCompletion], "the completion", SSE), errors=INFERENCE))
async def chat(request: Request, key: Key) -> Response:
    return await _complete(request, key, CHAT)


@router.post("/v1/inference/generate", **documented(
    body=json_request(CompletionRequest), ok=json_ok(Envelope[Completion], "the completion", SSE),
    errors=INFERENCE))
async def generate(request: Request, key: Key) -> Response:
    return await _complete(request, key, GENERATE)


@router.post("/oai/v1/chat/completions", **documented(
    body=json_request(ChatRequest), ok=json_ok(ChatCompletion, "the completion", SSE), errors=INFERENCE,
    openai=True))
async def openai_chat(request: Request, key: Key) -> Response:
    return await _complete(request, key, CHAT)


@router.post("/oai/v1/completions", **documented(
    body=json_request(CompletionRequest), ok=json_ok(Completion, "the completion", SSE), errors=INFERENCE,
    openai=True))
async def openai_completions(request: Request, key: Key) -> Response:
    return await _complete(request, key, GENERATE)
