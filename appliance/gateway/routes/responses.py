"""/oai/v1/responses: OpenAI's Responses API (create, retrieve, delete, cancel, input items), plain OpenAI shapes.

Creating a response is inference, metered as a chat completion is; reading,
deleting and cancelling one are not.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request, Response

from appliance.db.keys import ApiKey
from appliance.gateway.auth import require
from appliance.gateway.body import json_body, parse_query
from appliance.gateway.calls import call_of, respond
from appliance.gateway.openapi import INFERENCE, KEYED, OpenAIError, documented, json_ok, json_request
from appliance.gateway.routing import api_router
from appliance.protocol.responses import DeletedResponse, InputItemList, InputItemsQuery, ResponseRequest, \
    RetrieveQuery
from appliance.protocol.responses import Response as ResponseObject
from appliance.serving import responses
from appliance.serving.errors import ErrorCode

router = api_router(metered=True)
reads = api_router()

Key = Annotated[ApiKey, Depends(require("models:use"))]

# OpenAI answers a request it refuses with 400 (invalid_request_error); the body parser's own refusals stay 422.
BAD_REQUEST = {400: {"model": OpenAIError, "description": "error codes: VALIDATION_ERROR (OpenAI's "
                                                          "invalid_request_error)"}}
EVENTS = {"text/event-stream": {"schema": {"type": "object", "required": ["data"], "properties": {
    "event": {"type": "string", "description": "the event's type (response.created, response.output_text.delta, …)"},
    "data": {"type": "string", "description": "the event as JSON, with its sequence_number"}}}}}


def _documented(ok: dict[int, dict[str, Any]], errors: Any, **more: Any) -> dict[str, Any]:
    declared = documented(ok=ok, errors=(*errors, ErrorCode.NOT_FOUND), openai=True, **more)
    declared["responses"].update(BAD_REQUEST)
    return declared


@router.post("/oai/v1/responses", **_documented(
    body=json_request(ResponseRequest), ok=json_ok(ResponseObject, "the response (stream: its events; background: "
                                                   "queued)", EVENTS), errors=INFERENCE))
async def create_response(request: Request, key: Key) -> Response:
    call = call_of(request, key)
    body = responses.parse_request(await json_body(request))
    return respond(call, request, await responses.create(call, body))


@reads.get("/oai/v1/responses/{response_id}", **_documented(
    ok=json_ok(ResponseObject, "the response (stream: its kept events)", EVENTS), errors=KEYED))
async def retrieve_response(request: Request, key: Key, response_id: str) -> Response:
    call = call_of(request, key)
    query = parse_query(request, RetrieveQuery)
    return respond(call, request, await responses.retrieve(call, response_id, query))


@reads.delete("/oai/v1/responses/{response_id}", **_documented(
    ok=json_ok(DeletedResponse, "the response is deleted"), errors=KEYED))
async def delete_response(request: Request, key: Key, response_id: str) -> Response:
    call = call_of(request, key)
    return respond(call, request, await responses.delete(call, response_id))


@reads.post("/oai/v1/responses/{response_id}/cancel", **_documented(
    ok=json_ok(ResponseObject, "the cancelled response"), errors=KEYED))
async def cancel_response(request: Request, key: Key, response_id: str) -> Response:
    call = call_of(request, key)
    return respond(call, request, await responses.cancel(call, response_id))


@reads.get("/oai/v1/responses/{response_id}/input_items", **_documented(
    ok=json_ok(InputItemList, "the response's input items"), errors=KEYED))
async def list_input_items(request: Request, key: Key, response_id: str) -> Response:
    call = call_of(request, key)
    query = parse_query(request, InputItemsQuery)
    return respond(call, request, await responses.input_items(call, response_id, query))


router.include_router(reads)
