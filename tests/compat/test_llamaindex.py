"""LlamaIndex (pinned) against the appliance: OpenAILike for chat, completion, streaming, tools and structured
output; OpenAIEmbedding with OpenAI's bare model name, which is all it accepts.

(No ``from __future__ import annotations`` here: LlamaIndex builds its tool schemas from the functions'
evaluated annotations.)
"""

from typing import Literal

import pytest

pytest.importorskip("llama_index.llms.openai_like", reason="LlamaIndex runs in .venv-llamaindex (scripts/test)")
from llama_index.core.llms import ChatMessage
from llama_index.core.prompts import PromptTemplate
from llama_index.core.tools import FunctionTool
from llama_index.embeddings.openai import OpenAIEmbedding
from llama_index.llms.openai_like import OpenAILike
from pydantic import BaseModel, Field

from tests.compat.conftest import CHAT, Box

HELLO = [ChatMessage(role="user", content="Hello")]


@pytest.fixture
def llm(box: Box, no_network: list[str]) -> OpenAILike:
    return OpenAILike(model=CHAT, api_base=box.oai, api_key=box.key, is_chat_model=True,
                      is_function_calling_model=True, context_window=2048, max_tokens=12)


class Weather(BaseModel):
    """The weather asked for."""

    city: Literal["Paris", "Oslo"]
    days: int = Field(ge=1, le=7)


def get_weather(city: Literal["Paris", "Oslo"]) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


def test_chat_completion_and_streaming(llm: OpenAILike) -> None:
    assert llm.chat(HELLO).message.content
    assert llm.complete("Once upon a time").text
    assert "".join(piece.delta or "" for piece in llm.stream_chat(HELLO))


def test_tools_and_structured_output(llm: OpenAILike) -> None:
    # A named tool: the tiny model's random weights follow a forced tool's schema, not a free choice.
    llm.max_tokens, llm.additional_kwargs = 200, {"seed": 3}
    answer = llm.chat_with_tools([FunctionTool.from_defaults(fn=get_weather)], user_msg="The weather in Paris?",
                                 tool_choice="get_weather")
    calls = llm.get_tool_calls_from_response(answer)
    assert calls[0].tool_name == "get_weather" and calls[0].tool_kwargs["city"] in ("Paris", "Oslo")
    weather = llm.structured_predict(Weather, PromptTemplate("The weather in {city} for 3 days?"),
                                     llm_kwargs={"tool_choice": "Weather"}, city="Paris")
    assert isinstance(weather, Weather)


def test_openai_embedding_with_a_bare_name(box: Box, no_network: list[str]) -> None:
    embedding = OpenAIEmbedding(model="text-embedding-3-small", api_base=box.oai, api_key=box.key)
    assert len(embedding.get_text_embedding("hello")) == 1536
    assert [len(vector) for vector in embedding.get_text_embedding_batch(["a", "b", "c"])] == [1536] * 3
