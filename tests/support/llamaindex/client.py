"""LlamaIndex's OpenAI integrations against the appliance, as a user's program calls them.

`python client.py` (in .venv-llamaindex) with OPENAI_BASE_URL, OPENAI_API_KEY and CHAT_MODEL set. Prints one JSON
object: per scenario what LlamaIndex returned (or the error it raised), and under "network" every attempt to reach
anything but loopback, which the guard installed before LlamaIndex is imported refuses. tests/compat judges it.

(No ``from __future__ import annotations`` here: LlamaIndex builds its tool schemas from the functions' evaluated
annotations.)
"""

import contextlib
import ipaddress
import json
import os
import socket
from collections.abc import Callable
from typing import Any, Literal

ATTEMPTS: list[str] = []


def loopback(host: Any) -> bool:
    if host in ("localhost", "") or not isinstance(host, str):
        return True
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    return False


def cut_network() -> None:
    """The air-gapped LAN as the client sees it: a lookup or a connection beyond loopback fails, and is listed."""
    connect, connect_ex, getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

    def guarded(real: Any) -> Any:
        def call(sock: socket.socket, address: Any) -> Any:
            if sock.family in (socket.AF_INET, socket.AF_INET6) and not loopback(address[0]):
                ATTEMPTS.append(f"connect {address}")
                raise ConnectionRefusedError(f"the network is cut: connect to {address}")
            return real(sock, address)
        return call

    def lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if not loopback(name):
            ATTEMPTS.append(f"lookup {name}")
            raise socket.gaierror(socket.EAI_NONAME, f"the network is cut: no lookup of {name}")
        return getaddrinfo(host, *args, **kwargs)

    socket.socket.connect, socket.socket.connect_ex = guarded(connect), guarded(connect_ex)  # type: ignore[method-assign]
    socket.getaddrinfo = lookup


cut_network()  # before LlamaIndex is imported: a library that phones home at import is caught too

from llama_index.core.llms import ChatMessage  # noqa: E402
from llama_index.core.prompts import PromptTemplate  # noqa: E402
from llama_index.core.tools import FunctionTool  # noqa: E402
from llama_index.embeddings.openai import OpenAIEmbedding  # noqa: E402
from llama_index.llms.openai_like import OpenAILike  # noqa: E402
from pydantic import BaseModel, Field  # noqa: E402

BASE_URL, KEY, CHAT = os.environ["OPENAI_BASE_URL"], os.environ["OPENAI_API_KEY"], os.environ["CHAT_MODEL"]
HELLO = [ChatMessage(role="user", content="Hello")]


class Weather(BaseModel):
    """The weather asked for."""

    city: Literal["Paris", "Oslo"]
    days: int = Field(ge=1, le=7)


def get_weather(city: Literal["Paris", "Oslo"]) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


def llm(**settings: Any) -> OpenAILike:
    # OpenAILike cannot know what a non-OpenAI model can do: these are LlamaIndex's settings for any such server.
    return OpenAILike(model=CHAT, api_base=BASE_URL, api_key=KEY, is_chat_model=True, is_function_calling_model=True,
                      context_window=2048, **{"max_tokens": 12, **settings})


def tool_calls() -> list[dict[str, Any]]:
    # A named tool: the tiny model's random weights follow a forced tool's schema, not a free choice.
    forced = llm(max_tokens=200, additional_kwargs={"seed": 3})
    answer = forced.chat_with_tools([FunctionTool.from_defaults(fn=get_weather)], user_msg="The weather in Paris?",
                                    tool_choice="get_weather")
    return [{"tool_name": call.tool_name, "tool_kwargs": call.tool_kwargs}
            for call in forced.get_tool_calls_from_response(answer)]


def structured() -> dict[str, Any]:
    forced = llm(max_tokens=200, additional_kwargs={"seed": 3})
    weather = forced.structured_predict(Weather, PromptTemplate("The weather in {city} for 3 days?"),
                                        llm_kwargs={"tool_choice": "Weather"}, city="Paris")
    return {"type": type(weather).__name__, "fields": weather.model_dump()}


def embedding() -> OpenAIEmbedding:
    # OpenAIEmbedding accepts only OpenAI's embedding names: the appliance's bare alias is what makes it work.
    return OpenAIEmbedding(model="text-embedding-3-small", api_base=BASE_URL, api_key=KEY)


SCENARIOS: dict[str, Callable[[], Any]] = {
    "chat": lambda: llm().chat(HELLO).message.content,
    "complete": lambda: llm().complete("Once upon a time").text,
    "stream_chat": lambda: "".join(piece.delta or "" for piece in llm().stream_chat(HELLO)),
    "chat_with_tools": tool_calls,
    "structured_predict": structured,
    "embedding": lambda: len(embedding().get_text_embedding("hello")),
    "embedding.batch": lambda: [len(vector) for vector in embedding().get_text_embedding_batch(["a", "b", "c"])],
}


def main() -> None:
    results: dict[str, Any] = {}
    for name, scenario in SCENARIOS.items():
        try:
            results[name] = scenario()
        except Exception as error:  # every scenario is reported, and judged by the test
            results[name] = {"error": type(error).__name__, "status": getattr(error, "status_code", None),
                             "message": str(error)[:500]}
    results["network"] = ATTEMPTS
    print(json.dumps(results))


if __name__ == "__main__":
    main()
