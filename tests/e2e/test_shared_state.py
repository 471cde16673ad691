"""Two gateways behind one load balancer share their state through one real PostgreSQL server."""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import catalogue_subset
from tests.support.appliance import RunningAppliance, start_appliance
from tests.support.postgres import postgres_server, why_unavailable

pytestmark = [pytest.mark.slow, pytest.mark.skipif(why_unavailable() is not None, reason=str(why_unavailable()))]

EMBED = "openai/text-embedding-3-small"


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="module")
def gateways(tiny_catalogue: Path, tmp_path_factory: pytest.TempPathFactory,
             database_url: str) -> Iterator[tuple[RunningAppliance, RunningAppliance]]:
    env = {"APPLIANCE_DATABASE_URL": database_url}
    states = [tmp_path_factory.mktemp(f"gateway-{name}") for name in "ab"]
    catalogues = [catalogue_subset(tiny_catalogue, [EMBED], state / "models.toml") for state in states]
    with start_appliance(catalogues[0], states[0], env=env) as a, start_appliance(catalogues[1], states[1],
                                                                                    env=env) as b:
        yield a, b


def appliance_cli(database_url: str, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "appliance.cli", *args], capture_output=True, text=True,
                            timeout=60, env={**os.environ, "APPLIANCE_DATABASE_URL": database_url,
                                             "APPLIANCE_STATE_DIR": "/nonexistent-state-dir-unused"})
    assert result.returncode == 0, result.stderr
    return result.stdout


def embed(gateway: RunningAppliance, key: str) -> int:
    with gateway.client(key) as client:
        return client.post("/v1/inference/embed", json={"model": EMBED, "input": "x"}).status_code


def test_a_key_made_once_works_on_both_gateways_and_a_revocation_holds_on_both_at_once(
        gateways: tuple[RunningAppliance, RunningAppliance], database_url: str) -> None:
    a, b = gateways
    key = appliance_cli(database_url, "keys", "create", "shared").strip().splitlines()[-1]
    assert (embed(a, key), embed(b, key)) == (200, 200)
    key_id = next(line.split()[0] for line in appliance_cli(database_url, "keys", "list").splitlines()
                  if " shared " in line)
    appliance_cli(database_url, "keys", "revoke", key_id)
    assert (embed(a, key), embed(b, key)) == (401, 401)  # the very next request, on either gateway


def test_a_budget_holds_across_both_gateways_under_concurrency(
        gateways: tuple[RunningAppliance, RunningAppliance], database_url: str) -> None:
    a, b = gateways
    key = appliance_cli(database_url, "keys", "create", "budgeted", "--budget-tokens", "60",
                        "--budget-period", "day").strip().splitlines()[-1]
    texts = ["one two three four five six"] * 40  # each a few tokens: the budget covers some, not all

    def one(i: int) -> httpx.Response:  # every other request through the other gateway
        with (a, b)[i % 2].client(key) as client:
            return client.post("/v1/inference/embed", json={"model": EMBED, "input": texts[i]})

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(one, range(len(texts))))
    served = [r.json()["data"]["usage"]["total_tokens"] for r in answers if r.status_code == 200]
    refused = [r.json()["error"]["code"] for r in answers if r.status_code != 200]
    assert served and refused and set(refused) == {"BUDGET_EXCEEDED"}
    assert sum(served) <= 60  # both gateways reserve in the one database: no overshoot
    with b.client(key) as client:
        deadline = time.monotonic() + 10
        while True:  # each gateway writes its usage rows a moment after answering
            rows = client.get("/v1/accounting/usage/summary", params={"group_by": "key", "period": "day"})
            summary = rows.json()["data"]["rows"]
            if (summary and summary[0]["request_count"] == len(texts)) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert summary[0]["request_count"] == len(texts) and summary[0]["total_tokens"] == sum(served)


def test_both_gateways_keep_their_state_in_postgresql_not_in_sqlite(
        gateways: tuple[RunningAppliance, RunningAppliance]) -> None:
    for gateway in gateways:
        assert not (gateway.state_dir / "appliance.db").exists()


def test_a_tenant_budget_holds_across_both_gateways_for_fifty_requests_through_many_keys(
        gateways: tuple[RunningAppliance, RunningAppliance], database_url: str) -> None:
    a, b = gateways
    admin = appliance_cli(database_url, "keys", "create", "box admin", *[arg for permission in (
        "models:list", "models:use", "api_keys:manage", "admin:access") for arg in ("-p", permission)])
    admin_key = admin.strip().splitlines()[-1]
    tenant = appliance_cli(database_url, "tenants", "create", "shared team", "--budget-tokens", "1000000",
                           "--budget-period", "total").strip().splitlines()[-1]
    secrets = []
    with a.client(admin_key) as box:
        for index in range(5):
            user = box.post("/v1/users", json={"email": f"member{index}@team.example", "tenant_id": tenant})
            assert user.status_code == 201, user.text
            for _ in range(2):
                made = box.post("/v1/api-keys", json={"name": "member", "assigned_user_id": user.json()["data"]["id"]})
                secrets.append(made.json()["data"]["key"])
        first = embed_tokens(a, secrets[0])
        limit = first * 8  # one request's worth spent: room for about seven more, across both gateways
        patched = box.patch(f"/v1/tenants/{tenant}", json={"budget": {"period": "total", "tokens": limit}})
        assert patched.status_code == 200, patched.text

    def one(i: int) -> httpx.Response:  # every other request through the other gateway, each key in turn
        with (a, b)[i % 2].client(secrets[i % len(secrets)]) as client:
            return client.post("/v1/inference/embed", json={"model": EMBED, "input": "one two three four"})

    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(one, range(50)))
    served = [r.json()["data"]["usage"]["total_tokens"] for r in answers if r.status_code == 200]
    refused = [r.json()["error"] for r in answers if r.status_code != 200]
    assert served and refused and {e["code"] for e in refused} == {"BUDGET_EXCEEDED"}
    with b.client(admin_key) as box:
        spend = box.get(f"/v1/tenants/{tenant}").json()["data"]["budget"]["spend"][0]
    assert spend["spent"] == first + sum(served) <= limit and spend["reserved"] == 0
    assert "ok:" in appliance_cli(database_url, "audit", "verify")  # both gateways and the CLI wrote one chain


def embed_tokens(gateway: RunningAppliance, key: str) -> int:
    with gateway.client(key) as client:
        answer = client.post("/v1/inference/embed", json={"model": EMBED, "input": "one two three four"})
    assert answer.status_code == 200, answer.text
    return int(answer.json()["data"]["usage"]["total_tokens"])
