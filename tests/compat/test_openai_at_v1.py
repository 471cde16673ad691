"""The official Python SDK (pinned) on both doors to the OpenAI layer: /oai/v1 on the main port and /v1 on the
OpenAI port (openai_port); and what an OpenAI client gets that was pointed at /v1 of the main port."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.compat.conftest import CHAT, EMBED, SMALL, Box

HELLO = [{"role": "user", "content": "Hello"}]


@pytest.mark.parametrize("door", ["oai", "v1"])
def test_the_sdk_works_on_either_door(box: Box, door: str) -> None:
    sdk = openai.OpenAI(base_url=getattr(box, door), api_key=box.key, max_retries=0)
    completion = sdk.chat.completions.create(model=CHAT, messages=HELLO, max_tokens=3)  # type: ignore[arg-type]
    assert completion.choices[0].message.content
    assert completion._request_id and completion._request_id.startswith("req_")  # from x-request-id
    assert CHAT in [model.id for model in sdk.models.list()]
    vectors = sdk.embeddings.create(model="text-embedding-3-small", input=[[15339, 1917], [791]])
    assert len(vectors.data) == 2 and len(vectors.data[0].embedding) == 1536
    image = sdk.images.generate(model="dall-e-3", prompt="a lake", size=SMALL)  # type: ignore[arg-type]
    assert image.data and image.data[0].url and httpx.get(image.data[0].url).content[:4] == b"\x89PNG"
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.embeddings.create(model=EMBED, input=[[15339, 100300]])
    assert caught.value.param == "input[0][1]" and caught.value.request_id  # type: ignore[attr-defined]
    with pytest.raises(openai.BadRequestError) as overflow:
        sdk.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "hi " * 3000}])
    assert overflow.value.code == "context_length_exceeded"


def test_the_openai_port_keeps_the_rest_of_the_appliance(box: Box) -> None:
    port = box.v1.removesuffix("/v1")
    assert httpx.get(f"{port}/health").json() == {"status": "ok"}
    no_key = httpx.post(f"{port}/v1/chat/completions", json={"model": CHAT, "messages": HELLO})
    assert no_key.status_code == 401 and no_key.json()["error"]["type"] == "invalid_request_error"
    assert no_key.headers["x-request-id"] == no_key.headers["x-scaigrid-request-id"]


def test_an_openai_client_at_v1_of_the_main_port_is_told_where_to_go(box: Box) -> None:
    sdk = openai.OpenAI(base_url=f"{box.appliance.url}/v1", api_key=box.key, max_retries=0)
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.chat.completions.create(model=CHAT, messages=HELLO)  # type: ignore[arg-type]
    assert "/oai/v1/chat/completions" in caught.value.message and "base_url" in caught.value.message
    with pytest.raises(openai.NotFoundError, match="/oai/v1/embeddings"):
        sdk.embeddings.create(model=EMBED, input="x")
