"""LangChain's OpenAI integration (langchain-openai, pinned) against the appliance, with nothing set but base_url
and the key; its embeddings with their defaults (cl100k_base token ids) and the network cut."""

from __future__ import annotations

import json
from typing import Literal

import httpx
import numpy as np
import pytest
from langchain_core.exceptions import ContextOverflowError
from langchain_openai import ChatOpenAI, OpenAIEmbeddings
from pydantic import BaseModel, Field

from tests.compat.conftest import CHAT, EMBED, Box


@pytest.fixture
def chat(box: Box, no_network: list[str]) -> ChatOpenAI:
    return ChatOpenAI(model=CHAT, base_url=box.oai, api_key=box.key, max_tokens=12)  # type: ignore[arg-type]


class Weather(BaseModel):
    """The weather asked for."""

    city: Literal["Paris", "Oslo"]
    days: int = Field(ge=1, le=7)


def get_weather(city: Literal["Paris", "Oslo"]) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


def test_invoke_and_stream(chat: ChatOpenAI) -> None:
    message = chat.invoke("Hello")
    assert message.content and message.response_metadata["finish_reason"] == "length"
    assert message.usage_metadata and message.usage_metadata["output_tokens"] == 12
    assert "".join(str(piece.content) for piece in chat.stream("Hello"))


def test_tools_and_structured_output(box: Box, no_network: list[str]) -> None:
    chat = ChatOpenAI(model=CHAT, base_url=box.oai, api_key=box.key, max_tokens=200, seed=3)  # type: ignore[arg-type]
    called = chat.bind_tools([get_weather], tool_choice="get_weather").invoke("The weather in Paris?")
    assert called.tool_calls[0]["name"] == "get_weather" and called.tool_calls[0]["args"]["city"] in ("Paris", "Oslo")
    weather = chat.with_structured_output(Weather).invoke("The weather in Paris for 3 days?")
    assert isinstance(weather, Weather)  # json_schema response_format: the engine follows the schema


def test_an_over_long_history_is_langchain_s_context_overflow(chat: ChatOpenAI) -> None:
    with pytest.raises(ContextOverflowError, match="maximum context length is 4096 tokens"):
        chat.invoke("hello world " * 3000)


def test_embeddings_with_their_defaults_send_cl100k_token_ids_offline(box: Box, no_network: list[str],
                                                                      tiktoken_cache: object) -> None:
    sent: list[dict[str, object]] = []
    seen = httpx.Client(event_hooks={"request": [lambda request: sent.append(json.loads(request.read()))]})
    embeddings = OpenAIEmbeddings(base_url=box.oai, api_key=box.key, http_client=seen)  # type: ignore[arg-type]
    vectors = embeddings.embed_documents(["hello world", "The quick brown fox"])
    query = embeddings.embed_query("hello world")
    assert sent[0]["model"] == "text-embedding-ada-002"  # LangChain's default name: a bare alias here
    assert sent[0]["input"] == [[15339, 1917], [791, 4062, 14198, 39935]]  # what tiktoken made of the texts
    with httpx.Client(base_url=box.oai, headers={"Authorization": f"Bearer {box.key}"}) as direct:
        as_text = direct.post("/embeddings", json={"model": EMBED, "input": ["hello world"]}).json()
    assert np.allclose(vectors[0], as_text["data"][0]["embedding"], atol=1e-6)  # decoded to the very same text
    assert np.allclose(query, vectors[0], atol=1e-6) and len(vectors[1]) == 1536
