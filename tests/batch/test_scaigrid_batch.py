"""POST /v1/inference/batch end to end: real gateway, the tiny embed and chat engines."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.batch.helpers import CHAT, EMBED, b64, chat_line, embed_line, read_lines, wait_batch
from tests.conftest import catalogue_subset
from tests.support.appliance import RunningAppliance, cli, start_appliance


@pytest.fixture(scope="module")
def appliance(tiny_catalogue: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAppliance]:
    state = tmp_path_factory.mktemp("batch-state")
    catalogue = catalogue_subset(tiny_catalogue, [EMBED, CHAT], state / "models.toml", load="startup")
    with start_appliance(catalogue, state) as running:
        yield running


def test_mixed_endpoints_from_base64_complete_with_one_result_per_line(appliance: RunningAppliance) -> None:
    lines = [embed_line("e1", "first"), chat_line("c1"), embed_line("e2", "second"),
             {"custom_id": "g1", "method": "POST", "url": "/v1/inference/generate",
              "body": {"model": CHAT, "prompt": "Once", "max_tokens": 3}},
             embed_line("bad-model", model="no/such-model")]
    with appliance.client(appliance.create_key()) as http:
        created = http.post("/v1/inference/batch", json={"input_file_base64": b64(lines),
                                                         "metadata": {"job": "nightly"}})
        assert created.status_code == 200, created.text
        batch = created.json()["data"]
        assert batch["id"].startswith("batch_") and batch["status"] == "in_progress"
        assert batch["request_counts"]["total"] == 5 and batch["metadata"] == {"job": "nightly"}
        done = wait_batch(http, batch["id"])
    assert done["status"] == "completed"
    assert done["request_counts"] == {"total": 5, "completed": 4, "failed": 1}
    output = {line["custom_id"]: line for line in read_lines(done["output_file_url"])}
    errors = {line["custom_id"]: line for line in read_lines(done["error_file_url"])}
    assert set(output) == {"e1", "c1", "e2", "g1"} and set(errors) == {"bad-model"}
    assert output["e1"]["response"]["status_code"] == 200 and output["e1"]["error"] is None
    assert output["e1"]["id"].startswith("batch_req_")
    assert len(output["e2"]["response"]["body"]["data"][0]["embedding"]) > 0
    assert output["c1"]["response"]["body"]["object"] == "chat.completion"
    assert output["g1"]["response"]["body"]["object"] == "text_completion"
    assert errors["bad-model"]["response"] is None
    assert errors["bad-model"]["error"]["code"] == "MODEL_NOT_FOUND"


def test_every_line_is_metered_as_one_usage_row_of_its_live_route(appliance: RunningAppliance) -> None:
    key = appliance.create_key()
    with appliance.client(key) as http:
        batch = http.post("/v1/inference/batch", json={"input_file_base64": b64(
            [embed_line("a"), chat_line("b")])}).json()["data"]
        wait_batch(http, batch["id"])
        rows = http.get("/v1/accounting/usage").json()["data"]["items"]
    assert sorted(row["route"] for row in rows) == ["/v1/inference/chat", "/v1/inference/embed"]
    assert all(row["tokens_in"] > 0 for row in rows)


def test_a_line_for_a_model_the_key_may_not_use_fails_as_a_live_request_would(appliance: RunningAppliance) -> None:
    key = appliance.create_key("--model", EMBED)
    with appliance.client(key) as http:
        batch = http.post("/v1/inference/batch", json={"input_file_base64": b64(
            [embed_line("ok"), chat_line("denied"),
             {"custom_id": "bad-body", "method": "POST", "url": "/v1/inference/embed", "body": {"model": EMBED}}])}
                          ).json()["data"]
        done = wait_batch(http, batch["id"])
    errors = {line["custom_id"]: line["error"] for line in read_lines(done["error_file_url"])}
    assert errors["denied"]["code"] == "MODEL_ACCESS_DENIED"
    assert errors["bad-body"]["code"] == "VALIDATION_ERROR" and "input" in errors["bad-body"]["message"]
    assert done["request_counts"] == {"total": 3, "completed": 1, "failed": 2}


def test_list_pages_with_a_cursor_and_filters_by_status(appliance: RunningAppliance) -> None:
    with appliance.client(appliance.create_key()) as http:
        ids = [http.post("/v1/inference/batch", json={"input_file_base64": b64([embed_line(str(n))])}
                         ).json()["data"]["id"] for n in range(3)]
        for batch_id in ids:
            wait_batch(http, batch_id)
        first = http.get("/v1/inference/batch", params={"limit": 2}).json()["data"]
        second = http.get("/v1/inference/batch", params={"limit": 2, "cursor": first["cursor"]}).json()["data"]
        completed = http.get("/v1/inference/batch", params={"status": "completed"}).json()["data"]
        bad = http.get("/v1/inference/batch", params={"status": "sleeping"})
    assert [b["id"] for b in first["items"]] == ids[::-1][:2] and first["cursor"] == ids[1]
    assert [b["id"] for b in second["items"]] == [ids[0]] and second["cursor"] is None
    assert {b["id"] for b in completed["items"]} == set(ids)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "VALIDATION_ERROR"


def test_the_cli_lists_shows_and_refuses_to_cancel_a_finished_batch(appliance: RunningAppliance) -> None:
    with appliance.client(appliance.create_key()) as http:
        batch = http.post("/v1/inference/batch", json={"input_file_base64": b64([embed_line("x")])}).json()["data"]
        wait_batch(http, batch["id"])
    listed = cli("batches", "list", state_dir=appliance.state_dir)
    assert listed.returncode == 0 and batch["id"] in listed.stdout and "done=1" in listed.stdout
    shown = cli("batches", "show", batch["id"], state_dir=appliance.state_dir)
    assert shown.returncode == 0 and json.loads(shown.stdout)["status"] == "completed"
    refused = cli("batches", "cancel", batch["id"], state_dir=appliance.state_dir)
    assert refused.returncode == 1 and "already completed" in refused.stderr
    unknown = cli("batches", "show", "batch_nope", state_dir=appliance.state_dir)
    assert unknown.returncode == 1 and "no batch batch_nope" in unknown.stderr


def test_metrics_count_lines_by_outcome_and_gauge_the_queue(appliance: RunningAppliance) -> None:
    with appliance.client(appliance.create_key()) as http:
        batch = http.post("/v1/inference/batch", json={"input_file_base64": b64(
            [embed_line("ok"), embed_line("bad", model="no/such")])}).json()["data"]
        wait_batch(http, batch["id"])
        metrics = http.get("/metrics").text
    assert 'appliance_batch_lines_total{state="done"}' in metrics
    assert 'appliance_batch_lines_total{state="failed"}' in metrics
    assert "appliance_batch_lines_queued " in metrics
