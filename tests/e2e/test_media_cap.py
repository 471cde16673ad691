"""The media cap end to end: a full store refuses new image URLs with a retryable 429, b64_json still works."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import catalogue_subset
from tests.support.appliance import RunningAppliance, start_appliance

SIZE = "64x64"


@pytest.fixture(scope="module")
def capped_appliance(tiny_catalogue: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAppliance]:
    state = tmp_path_factory.mktemp("media-cap")
    catalogue = catalogue_subset(tiny_catalogue, ["stability/sd-xl"], state / "models.toml",
                                 engine_options={"sizes": [SIZE], "steps": {"standard": 1, "hd": 1}})
    with start_appliance(catalogue, state, env={"APPLIANCE_MAX_MEDIA_BYTES": "1"}) as running:
        yield running


def test_a_full_media_store_refuses_urls_but_not_b64(capped_appliance: RunningAppliance) -> None:
    body = {"model": "openai/dall-e-3", "prompt": "a lighthouse", "size": SIZE}
    with capped_appliance.client(capped_appliance.create_key(), timeout=300) as client:
        full = client.post("/v1/inference/images/generate", json=body)
        assert full.status_code == 429, full.text
        error = full.json()["error"]
        assert error["code"] == "BACKEND_RATE_LIMITED" and "full" in error["message"] and "b64_json" in error["message"]
        assert int(full.headers["retry-after"]) == error["retry_after"] > 0
        openai = client.post("/oai/v1/images/generations", json=body)
        assert openai.status_code == 429 and openai.json()["error"]["code"] == "rate_limit_exceeded"
        inline = client.post("/v1/inference/images/generate", json={**body, "response_format": "b64_json"})
        assert inline.status_code == 200 and inline.json()["data"]["data"][0]["b64_json"]
    media = capped_appliance.state_dir / "media"
    assert not list(media.iterdir())  # nothing stored, nothing half-written
