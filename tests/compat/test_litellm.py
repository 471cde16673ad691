"""litellm as a client (pinned; not 1.107.0 or 1.107.1) against the appliance, through its `openai/` provider: chat,
streaming, tools, embeddings, and its typed errors (ContextWindowExceededError, NotFoundError, AuthenticationError)."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.compat.conftest import CHAT, WEATHER, Box

# litellm fetches its model price list at import unless told to use the copy it ships (docs/clients.md).
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
import litellm  # noqa: E402

HELLO = [{"role": "user", "content": "Hello"}]


@pytest.fixture
def to(box: Box, no_network: list[str]) -> dict[str, Any]:
    return {"api_base": box.oai, "api_key": box.key}


def test_chat_streaming_and_tools(to: dict[str, Any]) -> None:
    answer = litellm.completion(model=f"openai/{CHAT}", messages=HELLO, max_tokens=6, **to)
    assert answer.choices[0].message.content and answer.usage.completion_tokens == 6
    stream = litellm.completion(model=f"openai/{CHAT}", messages=HELLO, max_tokens=6, stream=True, **to)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream)
    called = litellm.completion(model=f"openai/{CHAT}", messages=HELLO, tools=[WEATHER], max_tokens=200, seed=3,
                                tool_choice={"type": "function", "function": {"name": "get_weather"}}, **to)
    assert called.choices[0].message.tool_calls[0].function.name == "get_weather"


def test_embeddings_by_the_bare_name(to: dict[str, Any]) -> None:
    answer = litellm.embedding(model="openai/text-embedding-3-small", input=["a", "b"], **to)
    assert len(answer.data) == 2 and len(answer.data[0]["embedding"]) == 1536 and answer.usage.prompt_tokens > 0


def test_errors_are_litellm_s_types(to: dict[str, Any]) -> None:
    with pytest.raises(litellm.ContextWindowExceededError):
        litellm.completion(model=f"openai/{CHAT}", messages=[{"role": "user", "content": "hello world " * 1500}],
                           max_tokens=4, **to)
    with pytest.raises(litellm.NotFoundError):
        litellm.completion(model="openai/nope/none", messages=HELLO, **to)
    with pytest.raises(litellm.AuthenticationError):
        litellm.completion(model=f"openai/{CHAT}", messages=HELLO, **{**to, "api_key": "sgk_wrong"})
