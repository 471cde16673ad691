"""A key stays inside the key that made it: it never outlives, out-rates or survives its parent.

Each test failed before the fix it names (the security review of issue 21, item 4).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.conftest import catalogue_subset
from tests.support.appliance import RunningAppliance, start_appliance

EMBED = "openai/text-embedding-3-small"
MANAGER = ["models:list", "models:use", "api_keys:manage"]


@pytest.fixture(scope="module")
def appliance(tiny_catalogue: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAppliance]:
    state = tmp_path_factory.mktemp("families-state")
    with start_appliance(catalogue_subset(tiny_catalogue, [EMBED], state / "models.toml"), state) as running:
        yield running


def client_for(appliance: RunningAppliance, secret: str) -> httpx.Client:
    return appliance.client(secret)


def make(http: httpx.Client, **body: object) -> dict:
    response = http.post("/v1/api-keys", json={"name": "child", "permissions": MANAGER, **body})
    assert response.status_code == 201, response.text
    return response.json()["data"]


def embed(http: httpx.Client) -> httpx.Response:
    return http.post("/v1/inference/embed", json={"model": EMBED, "input": "hi"})


def test_a_key_cannot_extend_its_own_expiry_but_may_bring_it_forward(appliance: RunningAppliance) -> None:
    soon = datetime.now(UTC) + timedelta(days=1)
    secret = appliance.create_key(*[a for p in MANAGER for a in ("-p", p)], "--expires", soon.isoformat())
    with client_for(appliance, secret) as http:
        me = http.get("/v1/api-keys").json()["data"]["items"][0]
        for later in (None, (soon + timedelta(days=30)).isoformat()):
            refused = http.patch(f"/v1/api-keys/{me['id']}", json={"expires_at": later})
            assert refused.status_code == 403, refused.text
            assert "cannot extend its own expiry" in refused.json()["error"]["message"]
        sooner = (soon - timedelta(hours=12)).replace(microsecond=0)
        moved = http.patch(f"/v1/api-keys/{me['id']}", json={"expires_at": sooner.isoformat()})
        assert moved.status_code == 200, moved.text
        assert datetime.fromisoformat(moved.json()["data"]["expires_at"]) == sooner


def test_a_child_inherits_its_parents_expiry_and_rate_limit_and_cannot_ask_for_more(
        appliance: RunningAppliance) -> None:
    soon = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    parent = appliance.create_key(*[a for p in MANAGER for a in ("-p", p)], "--expires", soon.isoformat(),
                                  "--rate-limit", "50")
    with client_for(appliance, parent) as http:
        child = make(http)
        assert datetime.fromisoformat(child["expires_at"]) == soon and child["rate_limit"] == 50
        for body, field in (({"expires_at": (soon + timedelta(days=1)).isoformat()}, "expires_at"),
                            ({"rate_limit": 51}, "rate_limit")):
            refused = http.post("/v1/api-keys", json={"name": "greedy", **body})
            assert refused.status_code == 403 and refused.json()["error"]["message"].startswith(field), refused.text
            assert http.patch(f"/v1/api-keys/{child['id']}", json=body).status_code == 403


def test_shortening_a_parents_expiry_shortens_its_descendants(appliance: RunningAppliance) -> None:
    admin = appliance.create_key(*[a for p in [*MANAGER, "admin:access"] for a in ("-p", p)])
    with client_for(appliance, admin) as http:
        parent = make(http)
        with client_for(appliance, parent["key"]) as parent_http:
            child = make(parent_http)
            assert child["expires_at"] is None
        cut = (datetime.now(UTC) + timedelta(hours=3)).replace(microsecond=0)
        assert http.patch(f"/v1/api-keys/{parent['id']}", json={"expires_at": cut.isoformat()}).status_code == 200
        assert datetime.fromisoformat(http.get(f"/v1/api-keys/{child['id']}").json()["data"]["expires_at"]) == cut


def test_revoking_a_key_revokes_its_children_and_grandchildren_at_once(appliance: RunningAppliance) -> None:
    parent = appliance.create_key(*[a for p in MANAGER for a in ("-p", p)])
    with client_for(appliance, parent) as http:
        child = make(http)
        with client_for(appliance, child["key"]) as child_http:
            grandchild = make(child_http)
            with client_for(appliance, grandchild["key"]) as grandchild_http:
                assert embed(grandchild_http).status_code == 200
                own = next(item for item in http.get("/v1/api-keys").json()["data"]["items"]
                           if item["created_by"] is None)  # the parent itself, made by the CLI
                assert http.delete(f"/v1/api-keys/{own['id']}").status_code == 200
                for revoked in (child_http, grandchild_http):
                    assert embed(revoked).status_code == 401
                    assert revoked.post("/v1/api-keys", json={"name": "more"}).status_code == 401


def test_a_family_shares_its_parents_requests_a_minute(appliance: RunningAppliance) -> None:
    parent = appliance.create_key(*[a for p in MANAGER for a in ("-p", p)], "--rate-limit", "4")
    with client_for(appliance, parent) as http:
        child = make(http)  # the parent's first request this minute
        with client_for(appliance, child["key"]) as child_http:
            assert [embed(child_http).status_code for _ in range(3)] == [200, 200, 200]
            refused = embed(child_http)
            assert refused.status_code == 429 and "the key that made it" in refused.json()["error"]["message"]
        assert embed(http).status_code == 429  # the children spent the parent's minute


def test_an_expiry_with_an_offset_is_kept_as_that_instant(appliance: RunningAppliance) -> None:
    admin = appliance.create_key(*[a for p in [*MANAGER, "admin:access"] for a in ("-p", p)])
    with client_for(appliance, admin) as http:
        made = make(http, expires_at="2031-01-01T05:00:00+05:00")
        assert datetime.fromisoformat(made["expires_at"]) == datetime(2031, 1, 1, tzinfo=UTC)
        shown = http.get(f"/v1/api-keys/{made['id']}").json()["data"]["expires_at"]
        assert datetime.fromisoformat(shown) == datetime(2031, 1, 1, tzinfo=UTC)


def test_a_family_spends_from_its_parents_budget(appliance: RunningAppliance) -> None:
    parent = appliance.create_key(*[a for p in MANAGER for a in ("-p", p)], "--budget-tokens", "40",
                                  "--budget-period", "total")
    with client_for(appliance, parent) as http:
        child = make(http)  # no budget of its own: the parent's is the family's
        with client_for(appliance, child["key"]) as child_http:
            answers = [embed(child_http) for _ in range(12)]
        statuses = [answer.status_code for answer in answers]
        assert 200 in statuses and statuses[-1] == 429, statuses
        refusal = answers[-1].json()["error"]
        assert refusal["code"] == "BUDGET_EXCEEDED" and "parent" in refusal["message"], refusal
        spent = http.get("/v1/api-keys").json()["data"]["items"]
        own = next(item for item in spent if item["created_by"] is None)
        assert own["budget"]["spend"][0]["spent"] <= 40  # the child spent the parent's tokens, never past them
