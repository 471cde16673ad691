"""Usage accounting and budgets end to end: real engines on tiny models, one appliance for the module.

Every inference request leaves one usage row in its own units; a budget
reserves the most a request can use before it runs and settles to what the
engine reported after, so no number of concurrent requests overshoots it.
"""

from __future__ import annotations

import concurrent.futures
import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.conftest import catalogue_subset
from tests.support.appliance import RunningAppliance, cli, start_appliance
from tests.support.audio import audio_file

CHAT = "scailabs/tiny-chat"  # transformers: quick, reports usage
VLLM = "scailabs/poolnoodle-omni"  # where include_usage matters
IMAGE = "stability/sd-xl"
WHISPER = "openai/whisper-1"
TTS = "openai/tts-1"
EMBED = "openai/text-embedding-3-small"
HI = [{"role": "user", "content": "hi"}]
ALL = ["models:list", "models:use", "api_keys:manage", "admin:access"]


@pytest.fixture(scope="module")
def appliance(tiny_catalogue: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAppliance]:
    state = tmp_path_factory.mktemp("accounting-state")
    catalogue = catalogue_subset(tiny_catalogue, [CHAT, VLLM, IMAGE, WHISPER, TTS, EMBED], state / "models.toml",
                                 load="startup")
    with start_appliance(catalogue, state) as running:
        yield running


@pytest.fixture(scope="module")
def admin(appliance: RunningAppliance) -> Iterator[httpx.Client]:
    with appliance.client(appliance.create_key(*[a for p in ALL for a in ("-p", p)]), timeout=120) as client:
        yield client


def budgeted(appliance: RunningAppliance, admin: httpx.Client, **budget: object) -> tuple[str, httpx.Client]:
    """A new key with ``budget`` (period day unless given), and a client using it."""
    made = admin.post("/v1/api-keys", json={"name": "budgeted", "budget": {"period": "day", **budget}})
    assert made.status_code == 201, made.text
    return made.json()["data"]["id"], appliance.client(made.json()["data"]["key"], timeout=120)


def spend(admin: httpx.Client, key_id: str, unit: str) -> dict:
    data = admin.get(f"/v1/api-keys/{key_id}").json()["data"]
    return next(s for s in data["budget"]["spend"] if s["unit"] == unit)


def rows_of(admin: httpx.Client, key_id: str, count: int) -> list[dict]:
    """The key's usage rows, once ``count`` of them are written (the writer batches every 0.2 s)."""
    deadline = time.monotonic() + 30
    while True:
        items = admin.get("/v1/accounting/usage", params={"key_id": key_id, "limit": 1000}).json()["data"]["items"]
        if len(items) >= count or time.monotonic() > deadline:
            return items
        time.sleep(0.1)


def chat(client: httpx.Client, path: str = "/v1/inference/chat", **extra: object) -> httpx.Response:
    return client.post(path, json={"model": CHAT, "messages": HI, "max_tokens": 8, **extra})


def refusal(response: httpx.Response, unit: str, limit: float) -> tuple[float, float]:
    """(left, needed) of a BUDGET_EXCEEDED answer, after checking that it names the unit, limit and rollover."""
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert error["code"] == "BUDGET_EXCEEDED"
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT00:00:00Z")
    assert f"budget of {limit:g} {unit}" in error["message"] and f"renews at {tomorrow}" in error["message"], error
    found = re.search(r"([\d.]+) left, this request may use up to ([\d.]+)", error["message"])
    assert found, error["message"]
    return float(found[1]), float(found[2])


def test_a_token_budget_stops_the_request_that_would_cross_it(appliance: RunningAppliance,
                                                              admin: httpx.Client) -> None:
    key_id, client = budgeted(appliance, admin, tokens=300)
    used, prompts = [], set()
    for _ in range(40):
        answer = chat(client)
        if answer.status_code != 200:
            break
        used.append(answer.json()["data"]["usage"]["total_tokens"])
        prompts.add(answer.json()["data"]["usage"]["prompt_tokens"])
    left, needed = refusal(answer, "tokens", 300)
    assert used and sum(used) <= 300
    assert left == 300 - sum(used) and needed > left  # it was stopped because it could have crossed the budget
    assert [needed] == [prompt + 8 for prompt in prompts]  # the engine counted the prompt; max_tokens is 8
    assert spend(admin, key_id, "tokens") == {"unit": "tokens", "limit": 300, "spent": sum(used), "reserved": 0,
                                              "remaining": 300 - sum(used)}
    late = chat(client, "/oai/v1/chat/completions")  # the SDK must not retry this 429
    assert late.status_code == 429 and late.headers["x-should-retry"] == "false"
    assert late.json()["error"]["code"] == "insufficient_quota"  # OpenAI's code for a spent quota


def test_fifty_concurrent_requests_against_a_nearly_spent_budget_overshoot_by_nothing(
        appliance: RunningAppliance, admin: httpx.Client) -> None:
    key_id, client = budgeted(appliance, admin, tokens=250)
    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(lambda _: chat(client), range(50)))
    served = [a.json()["data"]["usage"]["total_tokens"] for a in answers if a.status_code == 200]
    refused = [a for a in answers if a.status_code == 429]
    assert served and refused and len(served) + len(refused) == 50
    assert all(a.json()["error"]["code"] == "BUDGET_EXCEEDED" for a in refused)
    after = spend(admin, key_id, "tokens")
    assert after["spent"] == sum(served) <= 250 and after["reserved"] == 0
    rows = rows_of(admin, key_id, 50)
    assert sorted(r["status_code"] for r in rows) == sorted(a.status_code for a in answers)
    assert {r["error_code"] for r in rows if r["status_code"] == 429} == {"BUDGET_EXCEEDED"}
    assert sum(r["tokens_in"] + r["tokens_out"] for r in rows) == sum(served)


def _frames(response: httpx.Response) -> list[dict]:
    return [json.loads(line[6:]) for line in response.text.splitlines()
            if line.startswith("data: {")]


@pytest.mark.parametrize("model", [VLLM, CHAT])
def test_a_streamed_chat_is_counted_and_the_usage_chunk_goes_only_to_who_asked(
        appliance: RunningAppliance, admin: httpx.Client, model: str) -> None:
    key_id, client = budgeted(appliance, admin, tokens=5000)
    body = {"model": model, "messages": HI, "max_tokens": 6, "stream": True}
    plain = client.post("/v1/inference/chat", json=body)
    asked = client.post("/v1/inference/chat", json={**body, "stream_options": {"include_usage": True}})
    assert plain.status_code == asked.status_code == 200
    assert plain.text.endswith("data: [DONE]\n\n") and asked.text.endswith("data: [DONE]\n\n")
    assert not any("usage" in frame for frame in _frames(plain))
    [usage] = [frame["usage"] for frame in _frames(asked) if frame.get("usage")]
    rows = {row["request_id"]: row for row in rows_of(admin, key_id, 2)}
    asked_row = rows[asked.headers["x-scaigrid-request-id"]]
    plain_row = rows[plain.headers["x-scaigrid-request-id"]]
    assert (asked_row["tokens_in"], asked_row["tokens_out"]) == (usage["prompt_tokens"], usage["completion_tokens"])
    assert plain_row["tokens_in"] == usage["prompt_tokens"] and plain_row["tokens_out"] >= 1
    assert plain_row["backend_id"] and plain_row["model"] == model
    total = sum(row["tokens_in"] + row["tokens_out"] for row in rows.values())
    assert spend(admin, key_id, "tokens")["spent"] == total


def test_a_streamed_generate_is_counted(appliance: RunningAppliance, admin: httpx.Client) -> None:
    key_id, client = budgeted(appliance, admin, tokens=5000)
    answer = client.post("/v1/inference/generate", json={"model": CHAT, "prompt": "Once", "max_tokens": 5,
                                                         "stream": True})
    assert answer.status_code == 200 and "usage" not in answer.text
    [row] = rows_of(admin, key_id, 1)
    assert row["tokens_in"] >= 1 and row["tokens_out"] >= 1
    assert spend(admin, key_id, "tokens")["spent"] == row["tokens_in"] + row["tokens_out"]


def test_an_images_budget_counts_n(appliance: RunningAppliance, admin: httpx.Client) -> None:
    key_id, client = budgeted(appliance, admin, images=3)

    def generate(n: int) -> httpx.Response:
        return client.post("/v1/inference/images/generate", json={"model": IMAGE, "prompt": "a cat", "n": n,
                                                                   "response_format": "b64_json"})

    assert generate(2).status_code == 200
    assert refusal(generate(2), "images", 3) == (1, 2)
    assert generate(1).status_code == 200
    refusal(generate(1), "images", 3)
    assert spend(admin, key_id, "images")["spent"] == 3
    rows = rows_of(admin, key_id, 4)
    assert sorted((r["images"], r["image_size"]) for r in rows if r["status_code"] == 200) == [
        (1, "1024x1024"), (2, "1024x1024")]


def test_an_audio_budget_counts_seconds_heard_and_spoken(appliance: RunningAppliance, admin: httpx.Client) -> None:
    key_id, client = budgeted(appliance, admin, audio_seconds=3)

    def transcribe(seconds: float) -> httpx.Response:
        return client.post("/v1/inference/audio/transcribe", data={"model": WHISPER},
                           files={"file": ("clip.wav", audio_file(seconds), "audio/wav")})

    assert transcribe(2.0).status_code == 200
    left, needed = refusal(transcribe(2.0), "audio seconds", 3)  # the worker measured more than the room
    assert (left, needed) == (1.0, 2.0)
    speech = client.post("/v1/inference/audio/synthesize", json={"model": TTS, "input": "Hi.", "voice": "alloy",
                                                                 "response_format": "pcm"})
    assert speech.status_code == 200
    spoken = len(speech.content) / 2 / 24000  # 16-bit mono at 24 kHz
    rows = {r["request_id"]: r for r in rows_of(admin, key_id, 3)}
    speech_row = rows[speech.headers["x-scaigrid-request-id"]]
    assert speech_row["audio_seconds_out"] == pytest.approx(spoken, abs=0.001) and speech_row["characters"] == 3
    heard = [r["audio_seconds_in"] for r in rows.values() if r["status_code"] == 200 and r["audio_seconds_in"]]
    assert heard == [pytest.approx(2.0, abs=0.01)]
    assert spend(admin, key_id, "audio_seconds")["spent"] == pytest.approx(2.0 + spoken, abs=0.002)


def test_embeddings_are_counted_in_input_tokens(appliance: RunningAppliance, admin: httpx.Client) -> None:
    key_id, client = budgeted(appliance, admin, tokens=10_000)
    answer = client.post("/v1/inference/embed", json={"model": EMBED, "input": ["one text", "and another"]})
    assert answer.status_code == 200, answer.text
    [row] = rows_of(admin, key_id, 1)
    assert (row["tokens_in"], row["tokens_out"]) == (answer.json()["data"]["usage"]["prompt_tokens"], 0)
    assert spend(admin, key_id, "tokens")["spent"] == row["tokens_in"]


def test_the_summary_equals_the_sum_of_the_rows_in_every_grouping(appliance: RunningAppliance,
                                                                  admin: httpx.Client) -> None:
    rows: list[dict] = []
    cursor = None
    for _ in range(100):  # every row, page by page
        page = admin.get("/v1/accounting/usage", params={"limit": 7, **({"cursor": cursor} if cursor else {})})
        rows += page.json()["data"]["items"]
        cursor = page.json()["data"]["next_cursor"]
        if cursor is None:
            break
    assert len({r["id"] for r in rows}) == len(rows) > 7
    for group_by, column in (("model", "model"), ("key", "key_id"), ("backend", "backend_id")):
        summary = admin.get("/v1/accounting/usage/summary", params={"group_by": group_by, "period": "day"})
        got = {row["group_key"]: row for row in summary.json()["data"]["rows"]}
        for name, row in got.items():
            mine = [r for r in rows if r[column] == name]
            assert row["request_count"] == len(mine)
            assert row["input_tokens"] == sum(r["tokens_in"] for r in mine)
            assert row["output_tokens"] == sum(r["tokens_out"] for r in mine)
            assert row["total_tokens"] == row["input_tokens"] + row["output_tokens"]
            assert row["images"] == sum(r["images"] for r in mine)
            assert row["audio_seconds"] == pytest.approx(sum(r["audio_seconds_in"] + r["audio_seconds_out"]
                                                             for r in mine), abs=0.01)
        assert sum(row["request_count"] for row in got.values()) == len(rows)


def test_the_cli_and_metrics_show_the_same_numbers(appliance: RunningAppliance, admin: httpx.Client) -> None:
    summary = admin.get("/v1/accounting/usage/summary", params={"group_by": "model"}).json()["data"]["rows"]
    chat_row = next(row for row in summary if row["group_key"] == CHAT)
    printed = cli("usage", "--group-by", "model", state_dir=appliance.state_dir)
    assert printed.returncode == 0, printed.stderr
    line = next(line for line in printed.stdout.splitlines() if line.startswith(CHAT))
    assert line.split()[1:5] == [str(chat_row[k]) for k in ("request_count", "input_tokens", "output_tokens",
                                                             "total_tokens")]
    metrics = httpx.get(f"{appliance.url}/metrics").text
    counted = {unit: float(value) for unit, value in re.findall(
        rf'appliance_usage_units_total{{model="{CHAT}",unit="(tokens_in|tokens_out)"}} ([\d.e+]+)', metrics)}
    assert counted == {"tokens_in": chat_row["input_tokens"], "tokens_out": chat_row["output_tokens"]}


def test_a_key_sees_only_its_own_usage(appliance: RunningAppliance, admin: httpx.Client) -> None:
    key_id, client = budgeted(appliance, admin, tokens=1000)
    assert chat(client).status_code == 200
    rows_of(admin, key_id, 1)
    own = client.get("/v1/accounting/usage").json()["data"]["items"]
    assert own and {row["key_id"] for row in own} == {key_id}
    summary = client.get("/v1/accounting/usage/summary", params={"group_by": "key"}).json()["data"]["rows"]
    assert [row["group_key"] for row in summary] == [key_id]
    other = client.get("/v1/accounting/usage", params={"key_id": "key_someone_else"})
    assert other.status_code == 404 and other.json()["error"]["code"] == "NOT_FOUND"  # never "it exists, not yours"


@pytest.mark.parametrize(("path", "params", "field"), [
    ("/v1/accounting/usage", {"start": "2026-12-02T00:00:00Z", "end": "2026-12-01T00:00:00Z"}, "start"),
    ("/v1/accounting/usage", {"limit": "1001"}, "limit"),
    ("/v1/accounting/usage", {"start": "yesterday"}, "start"),
    ("/v1/accounting/usage/summary", {"group_by": "colour"}, "group_by"),
    ("/v1/accounting/usage/summary", {"period": "fortnight"}, "period"),
    ("/v1/accounting/usage/summary", {"start": "2026-12-02T00:00:00Z", "end": "2026-12-01T00:00:00Z"}, "start"),
])
def test_bad_usage_queries_are_validation_errors_naming_the_field(admin: httpx.Client, path: str, params: dict,
                                                                  field: str) -> None:
    answer = admin.get(path, params=params)
    assert answer.status_code == 422, answer.text
    assert [d["field"] for d in answer.json()["error"]["details"]] == [field]


def test_a_clean_stop_writes_every_usage_row(appliance: RunningAppliance, admin: httpx.Client) -> None:
    """Last in the module: it stops the appliance."""
    from appliance.accounting.store import UsageFilter, UsageStore
    from appliance.db.database import open_database

    key_id, client = budgeted(appliance, admin, tokens=100_000)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: chat(client), range(8)))
    assert all(a.status_code == 200 for a in answers)
    appliance.stop()  # SIGTERM right after the answers: rows may still be queued
    assert "Application shutdown complete" in appliance.log()  # a clean stop (uvicorn exits by the signal)
    store = UsageStore(open_database(f"sqlite:///{appliance.state_dir / 'appliance.db'}"))
    rows, _next = store.page(UsageFilter(key_id=key_id), limit=100)
    assert sorted(r.request_id for r in rows) == sorted(a.headers["x-scaigrid-request-id"] for a in answers)
