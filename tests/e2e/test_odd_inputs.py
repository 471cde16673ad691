"""Inputs at the edges of every type get a clear error, never a 500 (issue 21, item 11; each was a 500 before)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.batch.helpers import wait_batch
from tests.conftest import catalogue_subset
from tests.support.appliance import RunningAppliance, start_appliance

EMBED = "openai/text-embedding-3-small"
HUGE = 9223372036854775808  # one past the largest 64-bit integer
ADMIN = ("-p", "models:list", "-p", "models:use", "-p", "api_keys:manage", "-p", "admin:access")


@pytest.fixture(scope="module")
def appliance(tiny_catalogue: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAppliance]:
    state = tmp_path_factory.mktemp("odd-inputs-state")
    with start_appliance(catalogue_subset(tiny_catalogue, [EMBED], state / "models.toml"), state) as running:
        yield running


@pytest.fixture(scope="module")
def admin(appliance: RunningAppliance) -> Iterator[httpx.Client]:
    with appliance.client(appliance.create_key(*ADMIN)) as http:
        yield http


def refused(response: httpx.Response, field: str) -> None:
    assert response.status_code == 422, response.text
    assert field in [detail["field"] for detail in response.json()["error"]["details"]], response.text


@pytest.mark.parametrize("body, field", [
    ({"name": "k", "rate_limit": HUGE}, "rate_limit"),
    ({"name": "k", "budget": {"period": "day", "tokens": HUGE}}, "budget.tokens"),
    ({"name": "k", "budget": {"period": "day", "images": HUGE}}, "budget.images"),
    ({"name": "k", "budget": {"period": "day", "audio_seconds": HUGE}}, "budget.audio_seconds"),
])
def test_amounts_past_64_bits_are_refused_on_create_and_patch(admin: httpx.Client, body: dict, field: str) -> None:
    refused(admin.post("/v1/api-keys", json=body), field)
    made = admin.post("/v1/api-keys", json={"name": "target"}).json()["data"]
    refused(admin.patch(f"/v1/api-keys/{made['id']}", json={k: v for k, v in body.items() if k != "name"}), field)


def test_a_usage_cursor_past_64_bits_is_refused(admin: httpx.Client) -> None:
    refused(admin.get("/v1/accounting/usage", params={"cursor": str(HUGE)}), "cursor")


@pytest.mark.parametrize("path", ["/v1/accounting/usage", "/v1/accounting/usage/summary"])
def test_a_time_that_does_not_exist_in_utc_is_refused(admin: httpx.Client, path: str) -> None:
    refused(admin.get(path, params={"start": "0001-01-01T00:00:00+14:00"}), "start")
    refused(admin.get(path, params={"end": "9999-12-31T23:59:59-14:00"}), "end")


def test_a_batch_line_nested_too_deep_fails_its_batch_with_the_line_named(admin: httpx.Client) -> None:
    deep = '{"custom_id": "deep", "method": "POST", "url": "/v1/inference/embed", "body": ' + "[" * 5000 + \
        "]" * 5000 + "}\n"
    answer = admin.post("/v1/inference/batch", json={"input_file_base64": base64.b64encode(deep.encode()).decode()})
    assert answer.status_code == 200, answer.text
    batch = wait_batch(admin, answer.json()["data"]["id"])
    assert batch["status"] == "failed"
    assert batch["errors"]["data"][0]["line"] == 1 and "nested too deeply" in batch["errors"]["data"][0]["message"]


def test_a_file_whose_bytes_are_gone_is_a_404_saying_so(appliance: RunningAppliance, admin: httpx.Client) -> None:
    made = admin.post("/oai/v1/files", data={"purpose": "batch"}, files={"file": ("in.jsonl", b"{}\n")}).json()
    (appliance.state_dir / "files" / f"{made['id']}.jsonl").unlink()
    gone = admin.get(f"/oai/v1/files/{made['id']}/content")
    assert gone.status_code == 404 and "bytes" in json.loads(gone.text)["error"]["message"]
