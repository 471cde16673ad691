"""POST /v1/inference/rerank (enveloped), /oai/v1/rerank (Jina, Cohere v1) and /oai/v2/rerank (Cohere v2).

The Cohere SDK calls ``{base_url}/v1/rerank`` and ``{base_url}/v2/rerank``, so
``base_url="http://box:8080/oai"`` reaches both; Jina's clients post to
``{base_url}/rerank`` with ``base_url=…/oai/v1``. The service is serving/rerank.py.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Response

from appliance.gateway.auth import require
from appliance.gateway.body import parse_body
from appliance.gateway.calls import call_of, respond
from appliance.gateway.openapi import INFERENCE, Envelope, documented, json_ok, json_request
from appliance.gateway.routing import api_router
from appliance.protocol.rerank import CohereRerankRequest, CohereRerankResponse, RerankRequest, RerankResponse
from appliance.serving.rerank import cohere_rerank as cohere_service
from appliance.serving.rerank import rerank as rerank_service
from appliance.tenancy.caller import Caller

router = api_router(metered=True)

Key = Annotated[Caller, Depends(require("models:use"))]


async def _rerank(request: Request, key: Caller) -> Response:
    call = call_of(request, key)
    return respond(call, request, await rerank_service(call, await parse_body(request, RerankRequest)))


@router.post("/v1/inference/rerank", **documented(
    body=json_request(RerankRequest), ok=json_ok(Envelope[RerankResponse], "the documents, most relevant first"),
    errors=INFERENCE))
async def rerank(request: Request, key: Key) -> Response:
    return await _rerank(request, key)


@router.post("/oai/v1/rerank", **documented(
    body=json_request(RerankRequest), ok=json_ok(RerankResponse, "the documents, most relevant first"),
    errors=INFERENCE, openai=True))
async def openai_rerank(request: Request, key: Key) -> Response:
    return await _rerank(request, key)


@router.post("/oai/v2/rerank", **documented(
    body=json_request(CohereRerankRequest), ok=json_ok(CohereRerankResponse, "Cohere's rerank answer"),
    errors=INFERENCE, openai=True))
async def cohere_rerank(request: Request, key: Key) -> Response:
    call = call_of(request, key)
    return respond(call, request, await cohere_service(call, await parse_body(request, CohereRerankRequest)))
