"""The official openai SDK's batch flow against /oai/v1: files.create → batches.create → retrieve → files.content."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.batch.helpers import CHAT, EMBED, chat_line, embed_line, jsonl
from tests.conftest import catalogue_subset
from tests.support.appliance import RunningAppliance, start_appliance


@pytest.fixture(scope="module")
def appliance(tiny_catalogue: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAppliance]:
    state = tmp_path_factory.mktemp("oai-batch-state")
    catalogue = catalogue_subset(tiny_catalogue, [EMBED, CHAT], state / "models.toml", load="startup")
    with start_appliance(catalogue, state) as running:
        yield running


def sdk(appliance: RunningAppliance, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=appliance.url + "/oai/v1", api_key=key or appliance.create_key(), max_retries=0)


def finished(client: openai.OpenAI, batch_id: str, timeout: float = 240) -> openai.types.Batch:
    deadline = time.monotonic() + timeout
    batch = client.batches.retrieve(batch_id)
    while batch.status not in ("completed", "failed", "expired", "cancelled") and time.monotonic() < deadline:
        time.sleep(0.3)
        batch = client.batches.retrieve(batch_id)
    return batch


def test_chat_batch_with_one_bad_line_through_the_sdk(appliance: RunningAppliance) -> None:
    client = sdk(appliance)
    lines = [chat_line(f"c{n}", url="/v1/chat/completions") for n in range(3)]
    lines.append({**chat_line("unknown", url="/v1/chat/completions"),
                  "body": {"model": "no/such", "messages": [{"role": "user", "content": "Hi"}]}})
    uploaded = client.files.create(file=("chat.jsonl", jsonl(lines)), purpose="batch")
    assert uploaded.id.startswith("file-") and uploaded.purpose == "batch" and uploaded.bytes == len(jsonl(lines))
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                  completion_window="24h", metadata={"team": "a"})
    assert batch.status == "in_progress" and batch.metadata == {"team": "a"}
    batch = finished(client, batch.id)
    assert batch.status == "completed"
    assert (batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed) == (4, 3, 1)
    assert batch.output_file_id and batch.error_file_id
    output = [json.loads(line) for line in client.files.content(batch.output_file_id).text.splitlines()]
    errors = [json.loads(line) for line in client.files.content(batch.error_file_id).text.splitlines()]
    assert sorted(line["custom_id"] for line in output) == ["c0", "c1", "c2"]
    assert all(line["response"]["body"]["choices"][0]["message"]["role"] == "assistant" for line in output)
    assert all(line["response"]["request_id"].startswith("req_") for line in output)
    assert errors == [{"id": errors[0]["id"], "custom_id": "unknown", "response": None,
                       "error": {"code": "model_not_found", "message": errors[0]["error"]["message"]}}]
    assert client.files.retrieve(batch.output_file_id).purpose == "batch_output"


def test_embeddings_batch_through_the_sdk(appliance: RunningAppliance) -> None:
    client = sdk(appliance)
    lines = [embed_line(f"e{n}", f"text {n}", url="/v1/embeddings") for n in range(5)]
    uploaded = client.files.create(file=("embed.jsonl", jsonl(lines)), purpose="batch")
    batch = finished(client, client.batches.create(input_file_id=uploaded.id, endpoint="/v1/embeddings",
                                                   completion_window="24h").id)
    assert batch.status == "completed" and batch.error_file_id is None
    output = [json.loads(line) for line in client.files.content(batch.output_file_id).text.splitlines()]
    assert [line["custom_id"] for line in output] == [f"e{n}" for n in range(5)]  # input order
    assert all(line["response"]["body"]["object"] == "list" for line in output)
    listed = client.batches.list(limit=10)
    assert batch.id in [b.id for b in listed.data]
    files = client.files.list(purpose="batch_output")
    assert batch.output_file_id in [f.id for f in files.data]


def test_a_line_for_another_endpoint_fails_the_whole_batch_before_it_runs(appliance: RunningAppliance) -> None:
    client = sdk(appliance)
    lines = [embed_line("e", url="/v1/embeddings"), chat_line("c", url="/v1/chat/completions")]
    uploaded = client.files.create(file=("mixed.jsonl", jsonl(lines)), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h")
    assert batch.status == "failed" and batch.errors is not None
    assert [(e.code, e.line) for e in batch.errors.data] == [("mismatched_endpoint", 2)]


def test_unknown_ids_and_other_keys_objects_are_not_found(appliance: RunningAppliance) -> None:
    owner, stranger = sdk(appliance), sdk(appliance)
    uploaded = owner.files.create(file=("x.jsonl", jsonl([embed_line("e", url="/v1/embeddings")])), purpose="batch")
    batch = owner.batches.create(input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h")
    for call in (lambda: stranger.files.retrieve(uploaded.id), lambda: stranger.files.content(uploaded.id),
                 lambda: stranger.batches.retrieve(batch.id), lambda: stranger.batches.cancel(batch.id),
                 lambda: stranger.files.delete(uploaded.id), lambda: owner.batches.retrieve("batch_nope"),
                 lambda: stranger.batches.create(input_file_id=uploaded.id, endpoint="/v1/embeddings",
                                                 completion_window="24h")):
        with pytest.raises(openai.NotFoundError):
            call()
    assert uploaded.id not in [f.id for f in stranger.files.list().data]
    assert batch.id not in [b.id for b in stranger.batches.list().data]
    with pytest.raises(openai.BadRequestError, match="purpose"):
        owner.files.create(file=("x.jsonl", b"{}\n"), purpose="fine-tune")
    finished(owner, batch.id)
    with pytest.raises(openai.BadRequestError, match="already completed"):
        owner.batches.cancel(batch.id)
    assert owner.files.delete(uploaded.id).deleted
