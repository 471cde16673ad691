"""LlamaIndex's OpenAI integrations (pinned in tests/support/llamaindex/requirements.txt) against the appliance:
OpenAILike for chat, completion, streaming, tools and structured output; OpenAIEmbedding with OpenAI's bare model
name, which is all it accepts.

They hold the openai SDK below 3, so they run as a LlamaIndex user has them: in an environment of their own
(.venv-llamaindex, built by scripts/test), a client process (tests/support/llamaindex/client.py) that reaches
nothing but loopback and prints what each scenario returned.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.compat.conftest import CHAT, Box

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "tests" / "support" / "llamaindex" / "client.py"
VENV = ROOT / ".venv-llamaindex"


@pytest.fixture(scope="module")
def results(box: Box) -> dict[str, Any]:
    if not (VENV / ".test-stamp").is_file():  # written once the requirements are all installed
        pytest.skip(".venv-llamaindex is missing or incomplete (scripts/test installs it from "
                    "tests/support/llamaindex/requirements.txt)")
    env = {**os.environ, "OPENAI_BASE_URL": box.oai, "OPENAI_API_KEY": box.key, "CHAT_MODEL": CHAT}
    done = subprocess.run([str(VENV / "bin" / "python"), str(CLIENT)], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def ok(results: dict[str, Any], name: str) -> Any:
    result = results[name]
    assert not (isinstance(result, dict) and "error" in result), (name, result)
    return result


def test_the_client_reaches_nothing_but_loopback(results: dict[str, Any]) -> None:
    assert results["network"] == [], f"LlamaIndex reached for the network: {results['network']}"


def test_chat_completion_and_streaming(results: dict[str, Any]) -> None:
    assert ok(results, "chat") and ok(results, "complete") and ok(results, "stream_chat")


def test_tools_and_structured_output(results: dict[str, Any]) -> None:
    calls = ok(results, "chat_with_tools")
    assert calls[0]["tool_name"] == "get_weather" and calls[0]["tool_kwargs"]["city"] in ("Paris", "Oslo")
    weather = ok(results, "structured_predict")
    assert weather["type"] == "Weather"  # LlamaIndex validated the answer into the model
    assert weather["fields"]["city"] in ("Paris", "Oslo") and 1 <= weather["fields"]["days"] <= 7


def test_openai_embedding_with_a_bare_name(results: dict[str, Any]) -> None:
    assert ok(results, "embedding") == 1536
    assert ok(results, "embedding.batch") == [1536] * 3
