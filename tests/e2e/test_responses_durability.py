"""Stored responses are durable: a SIGKILL loses none, a background response survives its gateway (taken over,
or failed saying why, never lost nor run twice), and two gateways on one PostgreSQL share them all.

On the transformers chat model (it starts in seconds); background jobs of a killed gateway are taken over 3 s
after its last renewal.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import catalogue_subset
from tests.support.appliance import RunningAppliance, start_appliance
from tests.support.openai_schema import conforms, conforms_event
from tests.support.postgres import postgres_server, why_unavailable

pytestmark = pytest.mark.slow

CHAT = "scailabs/tiny-chat"
STALE = {"APPLIANCE_RESPONSES_STALE_S": "3"}
LONG = {"model": CHAT, "input": "Tell me everything.", "max_output_tokens": 512, "background": True}


def catalogue(tiny_catalogue: Path, state: Path) -> Path:
    state.mkdir(parents=True, exist_ok=True)
    return catalogue_subset(tiny_catalogue, [CHAT], state / "models.toml", load="startup")


def create(client: httpx.Client, **body: Any) -> dict[str, Any]:
    answer = client.post("/oai/v1/responses", json={"model": CHAT, "max_output_tokens": 8, **body})
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def wait_status(client: httpx.Client, response_id: str, until: tuple[str, ...], timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/oai/v1/responses/{response_id}").json()
        if response["status"] in until or time.monotonic() > deadline:
            assert response["status"] in until, response
            return response  # type: ignore[no-any-return]
        time.sleep(0.05)


def kill(gateway: RunningAppliance) -> None:
    gateway.process.send_signal(signal.SIGKILL)
    gateway.process.wait(30)


def usage_of(client: httpx.Client, expected: int, timeout: float = 10) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        rows = client.get("/v1/accounting/usage", params={"limit": 100}).json()["data"]["items"]
        if len(rows) >= expected or time.monotonic() > deadline:
            return rows  # type: ignore[no-any-return]
        time.sleep(0.2)


def test_sigkill_loses_no_stored_response_and_a_background_job_is_taken_over(tiny_catalogue: Path,
                                                                             tmp_path: Path) -> None:
    state = tmp_path / "state"
    models = catalogue(tiny_catalogue, state)
    with start_appliance(models, state, env=STALE) as first:
        key = first.create_key()
        with first.client(key) as client:
            answered = create(client, input="Remember: the code is 7.")
            job = create(client, **LONG)
            wait_status(client, job["id"], ("in_progress",))
        kill(first)  # at once after the answer, and while the job runs
    with start_appliance(models, state, env=STALE) as second, second.client(key) as client:
        kept = client.get(f"/oai/v1/responses/{answered['id']}")
        assert kept.status_code == 200 and kept.json() == answered
        follow_up = create(client, input="What is the code?", previous_response_id=answered["id"])
        assert follow_up["usage"]["input_tokens"] > answered["usage"]["input_tokens"]
        done = wait_status(client, job["id"], ("completed", "incomplete", "failed"), timeout=120)
        conforms("Response", done)
        assert done["status"] in ("completed", "incomplete") and done["output"][0]["content"][0]["text"]
        assert "taken over from a gateway that stopped" in second.log()
        rows = [row for row in usage_of(client, expected=3) if row["route"] == "/oai/v1/responses"]
        job_rows = [row for row in rows if row["tokens_out"] > 8]  # the job's: the others answered 8 tokens
        assert len(job_rows) == 1  # run to its end once, here (the killed run wrote none); its POST is none


def test_a_streamed_background_job_killed_mid_answer_fails_saying_so(tiny_catalogue: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    models = catalogue(tiny_catalogue, state)
    with start_appliance(models, state, env=STALE) as first:
        key = first.create_key()
        with first.client(key) as client, client.stream("POST", "/oai/v1/responses",
                                                        json={**LONG, "stream": True}) as answer:
            lines = answer.iter_lines()
            created = json.loads(next(line for line in lines if line.startswith("data: ")).removeprefix("data: "))
            deltas = 0
            for line in lines:
                deltas += line.startswith("data: ") and '"response.output_text.delta"' in line
                if deltas == 20:
                    break
            kill(first)  # every event a client got is in the DB already
    response_id = created["response"]["id"]
    with start_appliance(models, state, env=STALE) as second, second.client(key) as client:
        failed = wait_status(client, response_id, ("failed",), timeout=60)
        assert "after part of the answer had been sent" in failed["error"]["message"]
        with client.stream("GET", f"/oai/v1/responses/{response_id}", params={"stream": "true"}) as replay:
            events = [json.loads(line.removeprefix("data: ")) for line in replay.iter_lines()
                      if line.startswith("data: ")]
    for event in events:
        conforms_event(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[0]["type"] == "response.created" and [e["type"] for e in events][-2:] == ["error",
                                                                                           "response.failed"]
    assert sum(e["type"] == "response.output_text.delta" for e in events) >= 20


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    reason = why_unavailable()
    if reason is not None:
        pytest.skip(reason)
    with postgres_server() as url:
        yield url


def test_two_gateways_share_chains_and_a_background_job_outlives_one_of_them(
        tiny_catalogue: Path, tmp_path: Path, database_url: str) -> None:
    env = {**STALE, "APPLIANCE_DATABASE_URL": database_url}
    a_state, b_state = tmp_path / "a", tmp_path / "b"
    with start_appliance(catalogue(tiny_catalogue, a_state), a_state, env=env) as a, \
            start_appliance(catalogue(tiny_catalogue, b_state), b_state, env=env) as b:
        made = subprocess.run([sys.executable, "-m", "appliance.cli", "keys", "create", "shared"], capture_output=True,
                              text=True, timeout=60, env={**os.environ, "APPLIANCE_DATABASE_URL": database_url,
                                                          "APPLIANCE_STATE_DIR": str(a_state)})
        assert made.returncode == 0, made.stderr
        key = made.stdout.strip().splitlines()[-1]
        with a.client(key) as on_a, b.client(key) as on_b:
            first = create(on_a, input="Remember: the code is 7.")
            second = create(on_b, input="What is the code?", previous_response_id=first["id"])
            third = create(on_a, input="Sure?", previous_response_id=second["id"])
            assert third["usage"]["input_tokens"] > second["usage"]["input_tokens"] > first["usage"]["input_tokens"]
            assert on_b.get(f"/oai/v1/responses/{third['id']}").json() == third

            short = create(on_a, model=CHAT, input="Hi", background=True, stream=False)
            assert wait_status(on_b, short["id"], ("completed", "incomplete"))["output"]
            job = create(on_a, **LONG)
            wait_status(on_b, job["id"], ("in_progress",))
            kill(a)
            done = wait_status(on_b, job["id"], ("completed", "incomplete", "failed"), timeout=120)
            assert done["status"] in ("completed", "incomplete")
            assert "taken over from a gateway that stopped" in b.log()
