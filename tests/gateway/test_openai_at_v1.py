"""The OpenAI layer at /v1 too: for every request (the OpenAI port) or for the requests to given host names."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from appliance.catalogue import parse_catalogue
from appliance.config import load_settings
from appliance.gateway.app import create_gateway
from appliance.gateway.openai_at_v1 import OpenAIAtV1, OpenAIHttpProtocol, openai_path
from appliance.gateway.http_limits import BoundedHttpProtocol
from appliance.serving.context import Surface


def test_v1_paths_are_the_openai_layer_s_but_media_links_and_the_rest_stay() -> None:
    assert openai_path("/v1/chat/completions") == "/oai/v1/chat/completions"
    assert openai_path("/v1/models") == "/oai/v1/models"
    assert openai_path("/v1/media/tok_abc") is None  # an image URL handed out on that port still resolves
    assert openai_path("/health") is None and openai_path("/v1x") is None


def test_the_parser_s_refusals_on_the_openai_port_are_openai_shaped() -> None:
    assert OpenAIHttpProtocol.surface_for(None, "/v1/embeddings") is Surface.OPENAI  # type: ignore[arg-type]
    assert BoundedHttpProtocol.surface_for(None, "/v1/embeddings") is Surface.SCAIGRID  # type: ignore[arg-type]


def test_a_host_name_gets_the_openai_layer_at_v1_and_other_hosts_the_contract(tmp_path: Path) -> None:
    async def scenario() -> None:
        gateway = create_gateway(load_settings(None, state_dir=tmp_path), parse_catalogue({"model": []}))
        app = OpenAIAtV1(gateway, ["openai.box.lan"])
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
            openai = await client.get("/v1/models", headers={"Host": "OpenAI.box.lan:8080"})
            scaigrid = await client.get("/v1/models", headers={"Host": "box.lan"})
        assert openai.status_code == 401 and set(openai.json()) == {"error"}
        assert openai.json()["error"]["type"] == "invalid_request_error"
        assert scaigrid.status_code == 401 and scaigrid.json()["status"] == "error"

    asyncio.run(scenario())
