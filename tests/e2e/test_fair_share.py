"""One tenant's flood never starves another, on the real engines (vLLM, and the embeddings worker's batches).

The chat model runs two calls at once (max_concurrency 2) so that eight
streams of a noisy tenant fill it; the quiet tenant's one call must get the
next free slot, ahead of the six the noisy tenant has waiting. The order is
read from when each stream's first chunk arrives, not from a clock.
"""

from __future__ import annotations

import threading
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import tomli_w

from tests.support.appliance import RunningAppliance, start_appliance

CHAT = "scailabs/tiny-chat-vllm"
EMBED = "openai/text-embedding-3-small"
ALL = ["models:list", "models:use", "api_keys:manage", "admin:access"]
DEADLINE_S = 300


@dataclass
class Box:
    appliance: RunningAppliance
    admin: httpx.Client
    keys: dict[str, str] = field(default_factory=dict)  # "noisy" / "quiet" → a key of that tenant's user
    tenants: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def box(tiny_catalogue: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:
    state = tmp_path_factory.mktemp("fair-share-state")
    tables = {t["slug"]: t for t in tomllib.loads(tiny_catalogue.read_text())["model"]}
    models = [{**tables[slug], "path": str((tiny_catalogue.parent / tables[slug]["path"]).resolve()),
               "load": "startup"} for slug in (CHAT, EMBED)]
    models[0]["max_concurrency"] = 2
    (state / "models.toml").write_text(tomli_w.dumps({"model": models}))
    with start_appliance(state / "models.toml", state) as appliance:
        admin = appliance.client(appliance.create_key(*[a for p in ALL for a in ("-p", p)]), timeout=120)
        found = Box(appliance, admin)
        for name in ("noisy", "quiet"):
            tenant = admin.post("/v1/tenants", json={"name": name}).json()["data"]["id"]
            user = admin.post("/v1/users", json={"email": f"{name}@example.com", "tenant_id": tenant,
                                                 "roles": ["tenant_user"]}).json()["data"]["id"]
            found.keys[name] = admin.post("/v1/api-keys", json={"name": name, "assigned_user_id": user}
                                          ).json()["data"]["key"]
            found.tenants[name] = tenant
        try:
            yield found
        finally:
            admin.close()


def stream(appliance: RunningAppliance, key: str, name: str, firsts: list[str], lock: threading.Lock,
           max_tokens: int) -> None:
    """One streamed chat; its name goes into ``firsts`` when its first chunk arrives (the call was admitted)."""
    body = {"model": CHAT, "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens,
            "ignore_eos": True, "stream": True}
    with appliance.client(key, timeout=DEADLINE_S) as http, http.stream("POST", "/v1/inference/chat",
                                                                         json=body) as answer:
        assert answer.status_code == 200, answer.read()
        lines = answer.iter_lines()
        for line in lines:
            if line.startswith("data: {"):
                with lock:
                    firsts.append(name)
                break
        for _line in lines:
            pass


def load(box: Box, tenant: str, what: str = "waiting", slug: str = CHAT) -> int:
    """The tenant's calls on the model that the admin status shows ``what`` (running or waiting)."""
    status = box.admin.get("/v1/admin/status").json()["data"]
    model = next(model for model in status["models"] if model["slug"] == slug)
    return sum(found[what] for found in model["tenants"] if found["tenant_id"] == box.tenants[tenant])


def wait_for(condition, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"not within {DEADLINE_S} s: {what}"
        time.sleep(0.05)


def test_the_quiet_tenant_gets_the_next_free_slot_ahead_of_the_noisy_queue(box: Box) -> None:
    firsts: list[str] = []
    lock = threading.Lock()
    threads = [threading.Thread(target=stream, args=(box.appliance, box.keys["noisy"], f"noisy{n}", firsts, lock,
                                                      160)) for n in range(8)]
    for thread in threads:
        thread.start()
    wait_for(lambda: load(box, "noisy") >= 4, "two noisy streams running and the rest waiting")
    admitted = 8 - load(box, "noisy")  # on a slow day one may have ended already and let a third in
    quiet = threading.Thread(target=stream, args=(box.appliance, box.keys["quiet"], "quiet", firsts, lock, 8))
    quiet.start()
    wait_for(lambda: "quiet" in firsts, "the quiet stream's first chunk")
    with lock:
        before_quiet = firsts[:firsts.index("quiet")]
    # First come, first served would start it after all eight noisy streams; fair share gives it the next free
    # slot, ahead of the noisy streams still waiting (those admitted when it came, and any whose slot freed while
    # its request was on the way: short streams end fast on a quiet box).
    assert admitted < 8 and len(before_quiet) < 8, firsts
    for thread in [*threads, quiet]:
        thread.join(DEADLINE_S)
    assert len(firsts) == 9


def test_the_quiet_tenants_wait_is_in_its_usage_row_and_the_metrics(box: Box) -> None:
    rows = box.admin.get("/v1/accounting/usage", params={"tenant_id": box.tenants["quiet"]}).json()["data"]["items"]
    waited = [row["queue_wait_ms"] for row in rows if row["model"] == CHAT]
    assert waited and waited[0] is not None and waited[0] > 0
    metrics = httpx.get(box.appliance.url + "/metrics").text
    quiet = box.tenants["quiet"]
    lines = [line for line in metrics.splitlines() if line.startswith("appliance_admission") and quiet in line]
    assert f'appliance_admission_admitted_total{{how="queued",model="{CHAT}",tenant="{quiet}"}} 1.0' in lines, lines
    assert f'appliance_admission_wait_seconds_count{{model="{CHAT}",tenant="{quiet}"}} 1.0' in lines, lines


def tenant_key(box: Box, name: str, share: dict[str, Any] | None = None) -> str:
    """A new tenant (with ``share``) and a key of a user of it."""
    tenant = box.admin.post("/v1/tenants", json={"name": name, "share": share}).json()["data"]["id"]
    user = box.admin.post("/v1/users", json={"email": f"{name}@example.com", "tenant_id": tenant,
                                             "roles": ["tenant_user"]}).json()["data"]["id"]
    box.tenants[name] = tenant
    return box.admin.post("/v1/api-keys", json={"name": name, "assigned_user_id": user}).json()["data"]["key"]


def test_a_client_that_leaves_while_queued_leaves_the_queue_and_is_not_charged(box: Box) -> None:
    # The hog's minimum of 2 puts its every waiting stream before anyone else's: the impatient client surely waits.
    hog, leaver = tenant_key(box, "hog", {"min_concurrency": 2}), tenant_key(box, "leaver")
    firsts: list[str] = []
    lock = threading.Lock()
    floods = [threading.Thread(target=stream, args=(box.appliance, hog, f"hog{n}", firsts, lock, 512))
              for n in range(16)]
    for flood in floods:
        flood.start()
    wait_for(lambda: load(box, "hog") >= 8, "two hog streams running and eight or more waiting")
    outcome: list[str] = []

    def impatient() -> None:
        body = {"model": CHAT, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
        # It gives up, closing its connection; after long enough for a slow box's status polls to see it queued.
        with box.appliance.client(leaver, timeout=6) as http:
            try:
                outcome.append(str(http.post("/v1/inference/chat", json=body).status_code))
            except httpx.ReadTimeout:
                outcome.append("gave up")

    client = threading.Thread(target=impatient)
    client.start()
    seen: list[int] = []
    wait_for(lambda: seen.append(load(box, "leaver")) or seen[-1] == 1 or not client.is_alive(),
             "the impatient request queued")
    assert 1 in seen, "the impatient request was never seen waiting"
    client.join(DEADLINE_S)
    wait_for(lambda: load(box, "leaver") == 0, "the impatient request gone from the queue")
    assert outcome == ["gave up"] and load(box, "hog") > 0  # it left while the hog's queue still waited
    for flood in floods:
        flood.join(DEADLINE_S)
    assert len(firsts) == 16
    rows = box.admin.get("/v1/accounting/usage", params={"tenant_id": box.tenants["leaver"]}).json()["data"]["items"]
    assert [(row["status_code"], row["queue_wait_ms"], row["cost"], row["tokens_out"]) for row in rows] == [
        (499, None, 0.0, 0)], rows  # one row: the client closed the request; nothing ran, nothing charged
    metrics = httpx.get(box.appliance.url + "/metrics").text
    admitted = [line for line in metrics.splitlines() if line.startswith("appliance_admission_admitted_total")]
    assert not [line for line in admitted if box.tenants["leaver"] in line], admitted


def test_a_small_embed_request_is_not_held_behind_another_tenants_huge_one(box: Box) -> None:
    done: list[str] = []

    def send(key: str, name: str, texts: list[str]) -> None:
        with box.appliance.client(key, timeout=DEADLINE_S) as http:
            answer = http.post("/v1/inference/embed", json={"model": EMBED, "input": texts})
        done.append(name if answer.status_code == 200 else f"{name} failed: {answer.text[:300]}")

    texts = ["many words to embed " * 12] * 2048
    floods = [threading.Thread(target=send, args=(box.keys["noisy"], f"huge{n}", texts)) for n in range(4)]
    for flood in floods:
        flood.start()
    wait_for(lambda: load(box, "noisy", "running", EMBED) == 4, "the four huge requests sent to the worker")
    time.sleep(0.5)  # and in its queue: one batch encoding, the rest waiting (one batch alone takes longer)
    send(box.keys["quiet"], "small", ["one text"])
    for flood in floods:
        flood.join(DEADLINE_S)
    # The small one rode in the next batch, beside slices of the huge ones; it did not wait for all of them.
    assert done[0] == "small" and sorted(done[1:]) == [f"huge{n}" for n in range(4)], done


def refusal(answer: httpx.Response, status: int = 422) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    return answer.json()["error"]


def test_a_share_is_set_shown_and_checked_against_the_models_capacity(box: Box) -> None:
    made = box.admin.post("/v1/tenants", json={"name": "weighted", "models": [CHAT],
                                               "share": {"weight": 3, "min_concurrency": 2}})
    assert made.status_code == 201, made.text
    tenant = made.json()["data"]
    assert tenant["share"] == {"weight": 3.0, "min_concurrency": 2}
    assert box.admin.get(f"/v1/tenants/{box.tenants['quiet']}").json()["data"]["share"] == {
        "weight": 1.0, "min_concurrency": 0}  # the default: an equal share, no minimum

    error = refusal(box.admin.patch(f"/v1/tenants/{tenant['id']}", json={"share": {"min_concurrency": 3}}))
    assert error["code"] == "VALIDATION_ERROR" and error["details"][0]["field"] == "share.min_concurrency"
    assert "at most 2" in error["message"]  # its one model, the chat model, runs two calls at once
    error = refusal(box.admin.post("/v1/tenants", json={"name": "greedy", "share": {"min_concurrency": 9}}))
    assert error["details"][0]["field"] == "share.min_concurrency"  # more than any model of the box runs (8)
    for weight in (0, -1):
        error = refusal(box.admin.patch(f"/v1/tenants/{tenant['id']}", json={"share": {"weight": weight}}))
        assert error["code"] == "VALIDATION_ERROR" and error["details"][0]["field"] == "share.weight"
    error = refusal(box.admin.patch("/v1/tenants/ten_0000000000000000", json={"share": {"weight": 2}}), 404)
    assert error["code"] == "NOT_FOUND"

    changed = box.admin.patch(f"/v1/tenants/{tenant['id']}", json={"share": {"weight": 0.5}})
    assert changed.status_code == 200, changed.text
    assert changed.json()["data"]["share"] == {"weight": 0.5, "min_concurrency": 0}  # a share is given whole
