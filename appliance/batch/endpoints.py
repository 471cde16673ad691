"""The endpoints a batch line may name, each the one service a live request of it calls, with its request model.

A line is validated once, from its bytes, into the endpoint's typed request
(as vLLM's run_batch does), then handed to the service with a ``Call`` of the
batch's key.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from appliance.protocol.embeddings import EmbeddingRequest
from appliance.protocol.images import ImageGenerationRequest
from appliance.protocol.rerank import RerankRequest
from appliance.serving.admission import BACKGROUND_PRIORITY
from appliance.serving.body import parse_line
from appliance.serving.chat import CHAT, GENERATE, Kind, complete, parse_request
from appliance.serving.context import Call
from appliance.serving.embed import embed
from appliance.serving.errors import validation_error
from appliance.serving.images import generate_images
from appliance.serving.rerank import rerank
from appliance.serving.response_chat import InvalidRequest
from appliance.serving.responses import answer_line, parse_request as parse_response_request

BATCH_PRIORITY = BACKGROUND_PRIORITY  # vLLM's priority of a batch line: below every live request


@dataclass(frozen=True)
class Endpoint:
    """What a line of one URL is: how its line is parsed, and the service that answers it."""

    parse: Callable[[bytes], Any]
    serve: Callable[[Call, Any], Awaitable[bytes]]

    async def answer(self, call: Call, line: bytes) -> bytes:
        return await self.serve(call, self.parse(line))


def _completion(kind: Kind) -> Endpoint:
    def parse(line: bytes) -> Any:
        body = parse_request(line, kind, line=True)
        if body.stream:
            raise validation_error("stream", "a batch line cannot be streamed; leave stream out or false")
        return body

    async def serve(call: Call, body: Any) -> bytes:
        answer = await complete(call, kind, body, priority=BATCH_PRIORITY)
        assert isinstance(answer, bytes)  # not streamed
        return answer

    return Endpoint(parse, serve)


def _parse_response(line: bytes) -> Any:
    body = parse_response_request(line, line=True)
    if body.streamed:
        raise InvalidRequest("stream", "a batch line cannot be streamed; leave stream out or false")
    if body.in_background:
        raise InvalidRequest("background", "a batch line already runs in the background; leave background out")
    return body


CHAT_LINE, GENERATE_LINE = _completion(CHAT), _completion(GENERATE)
RESPONSES_LINE = Endpoint(_parse_response, answer_line)
EMBED_LINE = Endpoint(lambda line: parse_line(line, EmbeddingRequest), embed)
IMAGES_LINE = Endpoint(lambda line: parse_line(line, ImageGenerationRequest), generate_images)
RERANK_LINE = Endpoint(lambda line: parse_line(line, RerankRequest), rerank)

# ScaiGrid batches may mix these in one file.
SCAIGRID: dict[str, Endpoint] = {
    "/v1/inference/chat": CHAT_LINE,
    "/v1/inference/generate": GENERATE_LINE,
    "/v1/inference/embed": EMBED_LINE,
    "/v1/inference/images/generate": IMAGES_LINE,
    "/v1/inference/rerank": RERANK_LINE,
}
# OpenAI batches name one of these as their endpoint; every line's url must be it.
OPENAI: dict[str, Endpoint] = {
    "/v1/chat/completions": CHAT_LINE,
    "/v1/completions": GENERATE_LINE,
    "/v1/embeddings": EMBED_LINE,
    "/v1/images/generations": IMAGES_LINE,
    "/v1/responses": RESPONSES_LINE,
    "/v1/rerank": RERANK_LINE,  # not OpenAI's: the Jina / Cohere v1 shape of /oai/v1/rerank
}


def endpoint_for(surface: str, url: str) -> Endpoint:
    return (SCAIGRID if surface == "scaigrid" else OPENAI)[url]


def route_of(surface: str, url: str) -> str:
    """The route a line's usage row names: the live route it stands for."""
    return url if surface == "scaigrid" else "/oai" + url
