"""Keys over HTTP (/v1/api-keys): created, restricted, listed, patched and revoked by keys with api_keys:manage."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import catalogue_subset
from tests.support.appliance import RunningAppliance, start_appliance

CHAT = "scailabs/tiny-chat"
ALL = ["models:list", "models:use", "api_keys:manage", "admin:access"]
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def appliance(tiny_catalogue: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAppliance]:
    state = tmp_path_factory.mktemp("keys-state")
    catalogue = catalogue_subset(tiny_catalogue, [CHAT], state / "models.toml", load="startup")
    with start_appliance(catalogue, state) as running:
        yield running


@pytest.fixture(scope="module")
def admin(appliance: RunningAppliance) -> Iterator[httpx.Client]:
    args = [arg for permission in ALL for arg in ("-p", permission)]
    with appliance.client(appliance.create_key(*args)) as client:
        yield client


@pytest.fixture(scope="module")
def manager(appliance: RunningAppliance, admin: httpx.Client) -> Iterator[httpx.Client]:
    """A key that may manage keys and use models, but is no admin."""
    made = created(admin.post("/v1/api-keys", json={"name": "team lead",
                                                    "permissions": ["models:list", "models:use", "api_keys:manage"]}))
    with appliance.client(made["key"]) as client:
        yield client


def created(response: httpx.Response) -> dict:
    assert response.status_code == 201, response.text
    return response.json()["data"]


def error_of(response: httpx.Response, status: int, code: str, field: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    if field is not None:
        assert [d["field"] for d in error["details"]] == [field], error
    return error


def test_a_new_key_shows_its_secret_once_beside_id_and_prefix(appliance: RunningAppliance,
                                                              manager: httpx.Client) -> None:
    key = created(manager.post("/v1/api-keys", json={
        "name": "ci", "models": [CHAT], "rate_limit": 30, "expires_at": "2031-01-01T00:00:00Z",
        "budget": {"period": "day", "tokens": 1000, "images": 4}}))
    assert key["key"].startswith("sgk_") and len(key["key"]) >= 36 and key["key"].startswith(key["prefix"])
    assert key["id"].startswith("key_") and key["permissions"] == ["models:list", "models:use"]
    assert (key["models"], key["rate_limit"], key["expires_at"]) == ([CHAT], 30, "2031-01-01T00:00:00Z")
    assert key["budget"]["spend"] == [
        {"unit": "tokens", "limit": 1000, "spent": 0, "reserved": 0, "remaining": 1000},
        {"unit": "images", "limit": 4, "spent": 0, "reserved": 0, "remaining": 4}]
    shown = manager.get(f"/v1/api-keys/{key['id']}").json()["data"]
    assert "key" not in shown and shown["prefix"] == key["prefix"]
    with appliance.client(key["key"]) as client:
        answer = client.post("/v1/inference/chat", json={"model": CHAT, "messages": HI, "max_tokens": 2})
    assert answer.status_code == 200, answer.text


def test_a_manage_key_cannot_mint_an_admin_key_or_grant_what_it_lacks(manager: httpx.Client,
                                                                      admin: httpx.Client) -> None:
    refused = manager.post("/v1/api-keys", json={"name": "boss", "permissions": ["models:use", "admin:access"]})
    assert "admin:access" in error_of(refused, 403, "AUTHZ_PERMISSION_DENIED")["message"]
    narrow = created(admin.post("/v1/api-keys", json={"name": "narrow", "models": [CHAT],
                                                      "permissions": ["models:use", "api_keys:manage"]}))
    with httpx.Client(base_url=str(admin.base_url), headers={"Authorization": f"Bearer {narrow['key']}"}) as client:
        wider = client.post("/v1/api-keys", json={"name": "wider", "models": ["openai/tts-1"],
                                                  "permissions": ["models:use"]})
        assert "openai/tts-1" in error_of(wider, 403, "AUTHZ_PERMISSION_DENIED")["message"]
        inherits = created(client.post("/v1/api-keys", json={"name": "child", "permissions": ["models:use"]}))
    assert inherits["models"] == [CHAT]  # a key limited to some models makes keys limited to them


def test_a_manage_key_lists_and_sees_only_the_keys_it_made(manager: httpx.Client, admin: httpx.Client) -> None:
    mine = created(manager.post("/v1/api-keys", json={"name": "mine"}))
    others = created(admin.post("/v1/api-keys", json={"name": "not the manager's"}))
    listed = {item["id"] for item in manager.get("/v1/api-keys").json()["data"]["items"]}
    assert mine["id"] in listed and others["id"] not in listed
    error_of(manager.get(f"/v1/api-keys/{others['id']}"), 404, "NOT_FOUND")
    error_of(manager.patch(f"/v1/api-keys/{others['id']}", json={"rate_limit": 1}), 404, "NOT_FOUND")
    error_of(manager.delete(f"/v1/api-keys/{others['id']}"), 404, "NOT_FOUND")
    everything = {item["id"] for item in admin.get("/v1/api-keys", params={"limit": 1000}).json()["data"]["items"]}
    assert {mine["id"], others["id"]} <= everything


def test_listing_pages_with_limit_and_cursor(admin: httpx.Client) -> None:
    for index in range(3):
        created(admin.post("/v1/api-keys", json={"name": f"page {index}"}))
    seen: list[str] = []
    cursor = None
    for _ in range(100):
        data = admin.get("/v1/api-keys", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()["data"]
        seen += [item["id"] for item in data["items"]]
        if not data["has_more"]:
            break
        cursor = data["next_cursor"]
    everything = [item["id"] for item in admin.get("/v1/api-keys", params={"limit": 1000}).json()["data"]["items"]]
    assert seen == everything and len(seen) >= 3


def test_patch_changes_budget_rate_limit_and_models(appliance: RunningAppliance, manager: httpx.Client) -> None:
    key = created(manager.post("/v1/api-keys", json={"name": "to change"}))
    changed = manager.patch(f"/v1/api-keys/{key['id']}", json={
        "rate_limit": 5, "models": [CHAT], "budget": {"period": "week", "tokens": 50}})
    assert changed.status_code == 200, changed.text
    data = changed.json()["data"]
    assert (data["rate_limit"], data["models"], data["budget"]["period"], data["budget"]["tokens"]) == (
        5, [CHAT], "week", 50)
    with appliance.client(key["key"]) as client:
        answer = client.post("/v1/inference/chat", json={"model": CHAT, "messages": HI, "max_tokens": 2})
        assert answer.headers["x-scaigrid-ratelimit-limit"] == "5"
    cleared = manager.patch(f"/v1/api-keys/{key['id']}", json={"budget": None, "rate_limit": None}).json()["data"]
    assert cleared["budget"] is None and cleared["rate_limit"] is None and cleared["models"] == [CHAT]


def test_a_key_cannot_lift_its_own_limits(manager: httpx.Client) -> None:
    own_id = next(item["id"] for item in manager.get("/v1/api-keys").json()["data"]["items"]
                  if item["name"] == "team lead")
    error_of(manager.patch(f"/v1/api-keys/{own_id}", json={"budget": None}), 403, "AUTHZ_PERMISSION_DENIED")


def test_delete_revokes_at_once_and_a_revoked_key_cannot_be_patched(appliance: RunningAppliance,
                                                                    manager: httpx.Client) -> None:
    key = created(manager.post("/v1/api-keys", json={"name": "short-lived"}))
    with appliance.client(key["key"]) as client:
        assert client.get("/v1/models").status_code == 200
        revoked = manager.delete(f"/v1/api-keys/{key['id']}")
        assert revoked.status_code == 200 and revoked.json()["data"]["status"] == "revoked"
        error_of(client.get("/v1/models"), 401, "AUTH_TOKEN_INVALID")
    error_of(manager.patch(f"/v1/api-keys/{key['id']}", json={"rate_limit": 3}), 422, "VALIDATION_ERROR", "key_id")


def test_keys_are_managed_only_with_api_keys_manage(appliance: RunningAppliance) -> None:
    with appliance.client(appliance.create_key()) as plain:
        error_of(plain.get("/v1/api-keys"), 403, "AUTHZ_PERMISSION_DENIED")
        error_of(plain.post("/v1/api-keys", json={"name": "x"}), 403, "AUTHZ_PERMISSION_DENIED")


@pytest.mark.parametrize(("body", "field"), [
    ({"budget": {"period": "day", "tokens": 0}}, "budget.tokens"),
    ({"budget": {"period": "day", "tokens": -5}}, "budget.tokens"),
    ({"budget": {"period": "day", "audio_seconds": 0}}, "budget.audio_seconds"),
    ({"budget": {"period": "day", "minutes": 10}}, "budget.minutes"),
    ({"budget": {"period": "year", "tokens": 10}}, "budget.period"),
    ({"budget": {"period": "day"}}, "budget"),
    ({"permissions": ["models:use", "root"]}, "permissions[1]"),
    ({"expires_at": "next tuesday"}, "expires_at"),
    ({"expires_at": "2031-01-01T00:00:00"}, "expires_at"),  # no time zone: ambiguous
    ({"expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),  # in the past
    ({"rate_limit": 0}, "rate_limit"),
    ({"models": []}, "models"),
])
def test_bad_key_requests_are_validation_errors_naming_the_field(manager: httpx.Client, body: dict,
                                                                 field: str) -> None:
    error_of(manager.post("/v1/api-keys", json={"name": "bad", **body}), 422, "VALIDATION_ERROR", field)


def test_a_patch_without_sense_is_a_validation_error(manager: httpx.Client) -> None:
    key = created(manager.post("/v1/api-keys", json={"name": "patched badly"}))
    for body, field in (({"name": None}, "name"), ({"budget": {"period": "day", "images": 0}}, "budget.images"),
                        ({"colour": "red"}, "colour")):
        error_of(manager.patch(f"/v1/api-keys/{key['id']}", json=body), 422, "VALIDATION_ERROR", field)


def test_an_unknown_key_id_is_not_found(manager: httpx.Client) -> None:
    error_of(manager.get("/v1/api-keys/key_0000000000000000"), 404, "NOT_FOUND")
