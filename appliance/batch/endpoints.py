"""The endpoints a batch line may name, each mapped to the one service a live request of it calls."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from appliance.db.keys import ApiKey
from appliance.gateway.completions import CHAT, GENERATE, complete_json
from appliance.gateway.context import Caller
from appliance.gateway.embedding import embed
from appliance.gateway.imaging import generate_images

Service = Callable[[Caller, ApiKey, bytes], Awaitable[bytes]]

# vLLM's priority of a batch line (lower runs first; live requests have 0): its scheduler admits every waiting
# live request before a waiting batch line, and under memory pressure preempts batch lines first.
BATCH_PRIORITY = 10


async def _chat(caller: Caller, key: ApiKey, raw: bytes) -> bytes:
    return await complete_json(caller, key, CHAT, raw, priority=BATCH_PRIORITY)


async def _generate(caller: Caller, key: ApiKey, raw: bytes) -> bytes:
    return await complete_json(caller, key, GENERATE, raw, priority=BATCH_PRIORITY)


# ScaiGrid batches may mix these in one file.
SCAIGRID: dict[str, Service] = {
    "/v1/inference/chat": _chat,
    "/v1/inference/generate": _generate,
    "/v1/inference/embed": embed,
    "/v1/inference/images/generate": generate_images,
}
# OpenAI batches name one of these as their endpoint; every line's url must be it.
OPENAI: dict[str, Service] = {
    "/v1/chat/completions": _chat,
    "/v1/completions": _generate,
    "/v1/embeddings": embed,
    "/v1/images/generations": generate_images,
}


def service_for(surface: str, url: str) -> Service:
    return (SCAIGRID if surface == "scaigrid" else OPENAI)[url]


def route_of(surface: str, url: str) -> str:
    """The route a line's usage row names: the live route it stands for."""
    return url if surface == "scaigrid" else "/oai" + url
