"""Tenants, users, roles, scoped budgets, cost and the audit log, end to end on one real appliance.

Two tenants, A and B, each with an admin, a user and a viewer (each with a
key), share the box with its box admin. Every route is called by every role
of A against A's own things and B's: the table says what each gets, and a
test per row and role holds the appliance to it. Another tenant's anything
is NOT_FOUND, never "forbidden", so nothing confirms it exists.
"""

from __future__ import annotations

import concurrent.futures
import csv
import io
import json
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import tomli_w
import tomllib

from tests.batch.helpers import b64, embed_line
from tests.support.appliance import RunningAppliance, cli, start_appliance

EMBED = "openai/text-embedding-3-small"
OTHER = "acme/embed-b"  # the same tiny model under a second slug: tenant B's alone (never loaded here)
PRICE_IN = 1000.0  # per million input tokens: a token costs 0.001
ALL = ["models:list", "models:use", "api_keys:manage", "admin:access"]
ROLE_PERMISSIONS = {
    "tenant_admin": ["admin:access", "models:list", "models:use", "api_keys:manage"],
    "tenant_user": ["models:list", "models:use", "api_keys:manage", "accounting:view_own"],
    "tenant_viewer": ["models:list", "accounting:view_own"],
}
ROLES = {"admin": "tenant_admin", "user": "tenant_user", "viewer": "tenant_viewer"}


@dataclass
class Party:
    """A user of a tenant and a key of theirs."""

    user_id: str
    key_id: str
    secret: str
    client: httpx.Client


@dataclass
class World:
    appliance: RunningAppliance
    box: Party
    tenants: dict[str, str] = field(default_factory=dict)  # "A" → ten_…
    parties: dict[str, Party] = field(default_factory=dict)  # "A.admin" → …
    serial: int = 0

    def party(self, name: str) -> Party:
        return self.box if name == "box" else self.parties[name]

    def next(self) -> int:
        self.serial += 1
        return self.serial

    # Throwaway things a row of the table acts on, made by the box admin.
    def fresh_user(self, tenant: str, roles: list[str] | None = None) -> str:
        made = self.box.client.post("/v1/users", json={"email": f"fresh{self.next()}@{tenant.lower()}.example",
                                                       "tenant_id": self.tenants[tenant],
                                                       "roles": roles or ["tenant_user"]})
        return data(made, 201)["id"]

    def fresh_key(self, owner: str) -> str:
        made = self.box.client.post("/v1/api-keys", json={"name": f"fresh {self.next()}",
                                                          "assigned_user_id": self.party(owner).user_id})
        return data(made, 201)["id"]

    def fresh_tenant(self) -> str:
        return data(self.box.client.post("/v1/tenants", json={"name": f"fresh tenant {self.next()}"}), 201)["id"]


def data(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()["data"]


def error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["code"] == code, body
    return body


def write_catalogue(tiny_catalogue: Path, target: Path) -> Path:
    embed = next(t for t in tomllib.loads(tiny_catalogue.read_text())["model"] if t["slug"] == EMBED)
    embed = {**embed, "path": str((tiny_catalogue.parent / embed["path"]).resolve())}
    models = [{**embed, "load": "startup", "price": {"input_per_million": PRICE_IN}},
              {**embed, "slug": OTHER, "aliases": [], "load": "on-demand"}]
    target.write_text(tomli_w.dumps({"model": models}))
    return target


@pytest.fixture(scope="module")
def world(tiny_catalogue: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    state = tmp_path_factory.mktemp("tenancy-state")
    with start_appliance(write_catalogue(tiny_catalogue, state / "models.toml"), state) as appliance:
        secret = appliance.create_key(*[a for p in ALL for a in ("-p", p)])
        box_client = appliance.client(secret, timeout=120)
        me = data(box_client.get("/v1/me"))
        world = World(appliance, Party(me["user"]["id"], me["key"]["id"], secret, box_client))
        for tenant, models in (("A", [EMBED]), ("B", [EMBED, OTHER])):
            world.tenants[tenant] = data(box_client.post("/v1/tenants", json={"name": f"tenant {tenant}",
                                                                              "models": models}), 201)["id"]
            for short, role in ROLES.items():
                user = data(box_client.post("/v1/users", json={
                    "email": f"{short}@{tenant.lower()}.example", "display_name": f"{tenant} {short}",
                    "tenant_id": world.tenants[tenant], "roles": [role]}), 201)
                key = data(box_client.post("/v1/api-keys", json={
                    "name": f"{tenant} {short}", "assigned_user_id": user["id"],
                    "permissions": ROLE_PERMISSIONS[role]}), 201)
                world.parties[f"{tenant}.{short}"] = Party(user["id"], key["id"], key["key"],
                                                           appliance.client(key["key"], timeout=120))
        try:
            yield world
        finally:
            for party in (world.box, *world.parties.values()):
                party.client.close()


def embed(client: httpx.Client, text: str = "one two three", model: str = EMBED) -> httpx.Response:
    return client.post("/v1/inference/embed", json={"model": model, "input": text})


def box_admin_key(world: World) -> str:
    """A key of a box admin who lives in tenant A: above A's admin, who sees it but may not touch it."""
    user = world.fresh_user("A", ["box_admin"])
    made = world.box.client.post("/v1/api-keys", json={"name": "boss", "assigned_user_id": user})
    return data(made, 201)["id"]


def b_batch(world: World) -> str:
    """A batch of tenant B's user (one embed line)."""
    made = world.parties["B.user"].client.post("/v1/inference/batch", json={"input_file_base64": b64(
        [embed_line("b's")])})
    return data(made)["id"]


def b_event(world: World) -> str:
    """An audit event of tenant B's (its admin making a key)."""
    made = data(world.parties["B.admin"].client.post("/v1/api-keys", json={"name": "b's own"}), 201)
    page = data(world.box.client.get("/v1/audit-log", params={"resource_id": made["id"]}))
    return page["items"][0]["id"]


# --- every route × every role ---------------------------------------------------------------------------------

Request = tuple[str, str, dict[str, Any] | None]  # method, path, JSON body
Case = tuple[str, Callable[[World], Request], dict[str, int]]

CALLERS = ("box", "A.admin", "A.user", "A.viewer")


def everyone(status: int) -> dict[str, int]:
    return dict.fromkeys(CALLERS, status)


def by_role(box: int, admin: int, user: int, viewer: int) -> dict[str, int]:
    return {"box": box, "A.admin": admin, "A.user": user, "A.viewer": viewer}


CASES: list[Case] = [
    ("me", lambda w: ("GET", "/v1/me", None), everyone(200)),
    ("list tenants", lambda w: ("GET", "/v1/tenants", None), by_role(200, 403, 403, 403)),
    ("create a tenant", lambda w: ("POST", "/v1/tenants", {"name": f"new {w.next()}"}), by_role(201, 403, 403, 403)),
    ("read own tenant", lambda w: ("GET", f"/v1/tenants/{w.tenants['A']}", None), by_role(200, 200, 404, 404)),
    ("read other tenant", lambda w: ("GET", f"/v1/tenants/{w.tenants['B']}", None), by_role(200, 404, 404, 404)),
    ("change own tenant", lambda w: ("PATCH", f"/v1/tenants/{w.tenants['A']}", {"rate_limit": 100000}),
     by_role(200, 403, 404, 404)),
    ("change other tenant", lambda w: ("PATCH", f"/v1/tenants/{w.tenants['B']}", {"rate_limit": 100000}),
     by_role(200, 404, 404, 404)),
    ("delete a tenant", lambda w: ("DELETE", f"/v1/tenants/{w.fresh_tenant()}", None), by_role(200, 404, 404, 404)),
    ("list users", lambda w: ("GET", "/v1/users", None), by_role(200, 200, 403, 403)),
    ("list other tenant's users", lambda w: ("GET", f"/v1/users?tenant_id={w.tenants['B']}", None),
     by_role(200, 404, 403, 403)),
    ("create a user", lambda w: ("POST", "/v1/users", {"email": f"u{w.next()}@a.example",
                                                       "tenant_id": w.tenants["A"]}), by_role(201, 201, 403, 403)),
    ("create a user in other tenant", lambda w: ("POST", "/v1/users", {"email": f"u{w.next()}@b.example",
                                                                       "tenant_id": w.tenants["B"]}),
     by_role(201, 404, 403, 403)),
    ("create a box admin", lambda w: ("POST", "/v1/users", {"email": f"u{w.next()}@a.example", "roles": ["box_admin"],
                                                            "tenant_id": w.tenants["A"]}), by_role(201, 403, 403, 403)),
    ("read a user of own tenant", lambda w: ("GET", f"/v1/users/{w.parties['A.user'].user_id}", None),
     by_role(200, 200, 200, 404)),  # the user reads themselves
    ("read a user of other tenant", lambda w: ("GET", f"/v1/users/{w.parties['B.user'].user_id}", None),
     by_role(200, 404, 404, 404)),
    ("change a user", lambda w: ("PATCH", f"/v1/users/{w.fresh_user('A')}", {"display_name": "changed"}),
     by_role(200, 200, 403, 403)),
    ("change a user of other tenant", lambda w: ("PATCH", f"/v1/users/{w.fresh_user('B')}", {"display_name": "x"}),
     by_role(200, 404, 403, 403)),
    ("change a box admin", lambda w: ("PATCH", f"/v1/users/{w.fresh_user('A', ['box_admin'])}",
                                      {"display_name": "x"}), by_role(200, 403, 403, 403)),
    ("give a role", lambda w: ("PUT", f"/v1/users/{w.fresh_user('A')}/roles", {"roles": ["tenant_admin"]}),
     by_role(200, 200, 403, 403)),
    ("give a role above one's own", lambda w: ("PUT", f"/v1/users/{w.fresh_user('A')}/roles",
                                               {"roles": ["box_admin"]}), by_role(200, 403, 403, 403)),
    ("give a role in other tenant", lambda w: ("PUT", f"/v1/users/{w.fresh_user('B')}/roles",
                                               {"roles": ["tenant_viewer"]}), by_role(200, 404, 403, 403)),
    ("delete a user", lambda w: ("DELETE", f"/v1/users/{w.fresh_user('A')}", None), by_role(200, 200, 403, 403)),
    ("delete a user of other tenant", lambda w: ("DELETE", f"/v1/users/{w.fresh_user('B')}", None),
     by_role(200, 404, 403, 403)),
    ("list keys", lambda w: ("GET", "/v1/api-keys", None), by_role(200, 200, 200, 403)),
    ("create a key", lambda w: ("POST", "/v1/api-keys", {"name": f"k{w.next()}"}), by_role(201, 201, 201, 403)),
    ("create a key for a user of other tenant", lambda w: ("POST", "/v1/api-keys", {
        "name": "x", "assigned_user_id": w.parties["B.user"].user_id}), by_role(201, 404, 404, 403)),
    ("create a key for another user of own tenant", lambda w: ("POST", "/v1/api-keys", {
        "name": "x", "assigned_user_id": w.parties["A.viewer"].user_id}), by_role(201, 201, 404, 403)),
    ("read a key of own tenant", lambda w: ("GET", f"/v1/api-keys/{w.parties['A.viewer'].key_id}", None),
     by_role(200, 200, 404, 403)),
    ("read a key of other tenant", lambda w: ("GET", f"/v1/api-keys/{w.parties['B.user'].key_id}", None),
     by_role(200, 404, 404, 403)),
    ("change a key", lambda w: ("PATCH", f"/v1/api-keys/{w.fresh_key('A.user')}", {"rate_limit": 500}),
     by_role(200, 200, 404, 403)),
    ("revoke a key of other tenant", lambda w: ("DELETE", f"/v1/api-keys/{w.fresh_key('B.user')}", None),
     by_role(200, 404, 404, 403)),
    ("revoke a key of a box admin in own tenant", lambda w: ("DELETE", f"/v1/api-keys/{box_admin_key(w)}", None),
     by_role(200, 403, 404, 403)),
    ("usage", lambda w: ("GET", "/v1/accounting/usage", None), everyone(200)),
    ("usage of other tenant", lambda w: ("GET", f"/v1/accounting/usage?tenant_id={w.tenants['B']}", None),
     by_role(200, 404, 404, 404)),
    ("usage of a user of own tenant", lambda w: ("GET", f"/v1/accounting/usage?user_id={w.parties['A.user'].user_id}",
                                                 None), by_role(200, 200, 200, 404)),
    ("usage of a key of other tenant", lambda w: ("GET", f"/v1/accounting/usage?key_id={w.parties['B.user'].key_id}",
                                                  None), by_role(200, 404, 404, 404)),
    ("usage summary by tenant", lambda w: ("GET", "/v1/accounting/usage/summary?group_by=tenant", None),
     everyone(200)),
    ("usage export", lambda w: ("GET", "/v1/accounting/export?format=json", None), everyone(200)),
    ("audit log", lambda w: ("GET", "/v1/audit-log", None), by_role(200, 200, 403, 403)),
    ("audit log of other tenant", lambda w: ("GET", f"/v1/audit-log?tenant_id={w.tenants['B']}", None),
     by_role(200, 404, 403, 403)),
    ("an audit event of other tenant", lambda w: ("GET", f"/v1/audit-log/{b_event(w)}", None),
     by_role(200, 404, 403, 403)),
    ("audit export", lambda w: ("GET", "/v1/audit-log/export?format=csv", None), by_role(200, 200, 403, 403)),
    ("models", lambda w: ("GET", "/v1/models", None), everyone(200)),
    ("embed", lambda w: ("POST", "/v1/inference/embed", {"model": EMBED, "input": "hi"}), by_role(200, 200, 200, 403)),
    ("embed with other tenant's model", lambda w: ("POST", "/v1/inference/embed", {"model": OTHER, "input": "hi"}),
     {"A.admin": 404, "A.user": 404}),
    ("model status", lambda w: ("GET", "/v1/admin/status", None), by_role(200, 200, 403, 403)),
    ("unload a model", lambda w: ("POST", f"/v1/admin/models/{OTHER}/unload", None), by_role(200, 403, 403, 403)),
    ("batches", lambda w: ("GET", "/v1/inference/batch", None), by_role(200, 200, 200, 403)),
    ("make a batch", lambda w: ("POST", "/v1/inference/batch", {"input_file_base64": b64([embed_line("one")])}),
     by_role(200, 200, 200, 403)),
    ("read a batch of other tenant", lambda w: ("GET", f"/v1/inference/batch/{b_batch(w)}", None),
     by_role(200, 404, 404, 403)),
    ("cancel a batch of other tenant", lambda w: ("POST", f"/v1/inference/batch/{b_batch(w)}/cancel", None),
     {"A.admin": 404, "A.user": 404, "A.viewer": 403}),  # the box admin's answer depends on whether it finished
]


@pytest.mark.parametrize(("case", "caller"), [(case, caller) for case in CASES for caller in CALLERS
                                              if caller in case[2]],
                         ids=lambda value: value[0].replace(" ", "-") if isinstance(value, tuple) else value)
def test_every_route_answers_every_role_as_the_table_says(world: World, case: Case, caller: str) -> None:
    name, build, expected = case
    method, path, body = build(world)
    answer = world.party(caller).client.request(method, path, json=body)
    assert answer.status_code == expected[caller], f"{name} by {caller}: {answer.text}"
    if answer.status_code == 404:  # another tenant's thing is exactly like one that does not exist
        assert answer.json()["error"]["code"] in ("NOT_FOUND", "MODEL_NOT_FOUND")
        made_up = world.party(caller).client.request(method, invented(path),
                                                     json=json.loads(invented(json.dumps(body))))
        assert made_up.status_code == 404
        assert made_up.json()["error"]["code"] == answer.json()["error"]["code"]


def invented(text: str) -> str:
    """``text`` with every id (and tenant B's model) swapped for one that does not exist."""
    return re.sub(r"\b(ten|usr|key|audit|batch)_([0-9a-f]{8,})\b", r"\1_0\2", text).replace(OTHER, "acme/none")


# --- models, limits, cost ----------------------------------------------------------------------------------------

def test_a_tenant_sees_and_uses_only_its_models(world: World) -> None:
    a, b = world.parties["A.user"].client, world.parties["B.user"].client
    assert [m["slug"] for m in data(a.get("/v1/models"))["items"]] == [EMBED]
    assert [m["slug"] for m in data(b.get("/v1/models"))["items"]] == [OTHER, EMBED]
    assert [m["id"] for m in a.get("/oai/v1/models").json()["data"]] == [EMBED]
    error(a.get(f"/v1/models/{OTHER.replace('/', '%2F')}"), 404, "MODEL_NOT_FOUND")
    error(embed(a, model=OTHER), 404, "MODEL_NOT_FOUND")


def test_a_tenant_model_list_names_only_catalogue_models(world: World) -> None:
    refused = world.box.client.post("/v1/tenants", json={"name": "typo", "models": ["acme/nope"]})
    assert error(refused, 422, "VALIDATION_ERROR")["details"][0]["field"] == "models"


def wait_for_rows(client: httpx.Client, params: dict[str, Any], count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    while True:
        items = data(client.get("/v1/accounting/usage", params={**params, "limit": 1000}))["items"]
        if len(items) >= count or time.monotonic() > deadline:
            return items
        time.sleep(0.2)


def test_usage_rows_carry_user_tenant_and_cost_and_summaries_total_it(world: World) -> None:
    user = world.parties["B.user"]
    answer = embed(user.client, "cost me something")
    tokens = data(answer)["usage"]["prompt_tokens"]
    [row] = [r for r in wait_for_rows(user.client, {}, 1) if r["request_id"] == answer.headers["x-scaigrid-request-id"]]
    assert (row["user_id"], row["tenant_id"], row["key_id"]) == (user.user_id, world.tenants["B"], user.key_id)
    assert row["cost"] == pytest.approx(tokens * PRICE_IN / 1e6)
    this_hour = data(user.client.get("/v1/accounting/usage", params={"period": "hour"}))["items"]
    assert row["id"] in {r["id"] for r in this_hour}
    admin = world.parties["B.admin"].client
    by_user = {r["group_key"]: r for r in data(admin.get("/v1/accounting/usage/summary",
                                                         params={"group_by": "user"}))["rows"]}
    assert by_user[user.user_id]["total_cost"] == pytest.approx(by_user[user.user_id]["input_tokens"] * PRICE_IN / 1e6)
    by_tenant = data(admin.get("/v1/accounting/usage/summary", params={"group_by": "tenant"}))["rows"]
    assert [r["group_key"] for r in by_tenant] == [world.tenants["B"]]  # a tenant admin sees its tenant alone
    everything = data(world.box.client.get("/v1/accounting/usage/summary", params={"group_by": "tenant"}))["rows"]
    assert world.tenants["B"] in {r["group_key"] for r in everything}


def test_the_export_streams_csv_json_and_ndjson_and_refuses_too_wide_a_window(world: World) -> None:
    admin = world.parties["B.admin"].client
    embed(world.parties["B.admin"].client, "exported")
    wait_for_rows(admin, {}, 1)
    as_json = admin.get("/v1/accounting/export", params={"format": "json"})
    assert as_json.headers["content-type"].startswith("application/json")
    rows = as_json.json()
    assert rows and {r["tenant_id"] for r in rows} == {world.tenants["B"]}
    lines = admin.get("/v1/accounting/export", params={"format": "ndjson"}).text.splitlines()
    assert [json.loads(line)["id"] for line in lines] == [r["id"] for r in rows]
    table = list(csv.DictReader(io.StringIO(admin.get("/v1/accounting/export", params={"format": "csv"}).text)))
    assert [r["id"] for r in table] == [r["id"] for r in rows] and "cost" in table[0]
    wide = admin.get("/v1/accounting/export", params={"start": "2020-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"})
    assert "at most 366 days" in error(wide, 422, "VALIDATION_ERROR")["message"]


def test_a_budget_below_what_is_spent_is_accepted_with_that_said_and_stops_new_requests(world: World) -> None:
    box = world.box.client
    tenant = world.fresh_tenant()
    user = data(box.post("/v1/users", json={"email": "spender@c.example", "tenant_id": tenant}), 201)
    key = data(box.post("/v1/api-keys", json={"name": "spender", "assigned_user_id": user["id"]}), 201)
    data(box.patch(f"/v1/tenants/{tenant}", json={"budget": {"period": "day", "tokens": 1000}}))
    data(box.patch(f"/v1/users/{user['id']}", json={"budget": {"period": "month", "cost": 1}}))
    with world.appliance.client(key["key"]) as client:
        used = data(embed(client))["usage"]["total_tokens"]
        cost = used * PRICE_IN / 1e6
        changed = data(box.patch(f"/v1/tenants/{tenant}", json={"budget": {"period": "day", "tokens": used}}))
        assert changed["budget"]["spend"][0]["spent"] == used
        assert "already spent" in changed["warnings"][0] and "refused" in changed["warnings"][0]
        refused = error(embed(client), 429, "BUDGET_EXCEEDED")
        assert refused["message"].startswith(f"This tenant's daily budget of {used} tokens")
        user_budget = data(box.patch(f"/v1/users/{user['id']}", json={"budget": {"period": "month", "cost": cost / 2}}))
        assert [s["spent"] for s in user_budget["budget"]["spend"]] == [pytest.approx(cost)]
        assert user_budget["warnings"][0].startswith("budget.cost: the new limit")


def test_fifty_concurrent_requests_against_a_nearly_spent_tenant_budget_overshoot_by_nothing(world: World) -> None:
    box = world.box.client
    tenant = world.fresh_tenant()
    secrets = []
    for index in range(5):  # five users with two keys each: the tenant is the only scope they share
        user = data(box.post("/v1/users", json={"email": f"crowd{index}@d.example", "tenant_id": tenant}), 201)
        for _ in range(2):
            secrets.append(data(box.post("/v1/api-keys", json={"name": "crowd", "assigned_user_id": user["id"]}),
                                201)["key"])
    clients = [world.appliance.client(secret) for secret in secrets]
    try:
        data(box.patch(f"/v1/tenants/{tenant}", json={"budget": {"period": "total", "tokens": 100_000}}))
        first = data(embed(clients[0], "one two three four"))["usage"]["total_tokens"]
        limit = first * 8  # spent one request's worth: room for about seven more
        data(box.patch(f"/v1/tenants/{tenant}", json={"budget": {"period": "total", "tokens": limit}}))
        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            answers = list(pool.map(lambda i: embed(clients[i % len(clients)], "one two three four"), range(50)))
        served = [a.json()["data"]["usage"]["total_tokens"] for a in answers if a.status_code == 200]
        refused = [a.json()["error"] for a in answers if a.status_code != 200]
        assert served and refused and len(served) + len(refused) == 50
        assert all(e["code"] == "BUDGET_EXCEEDED" and "tenant's" in e["message"] for e in refused)
        spend = data(box.get(f"/v1/tenants/{tenant}"))["budget"]["spend"][0]
        assert spend["spent"] == first + sum(served) <= limit and spend["reserved"] == 0
    finally:
        for client in clients:
            client.close()


def test_rate_limits_of_user_and_tenant_hold_each_on_its_own(world: World) -> None:
    box = world.box.client
    tenant = world.fresh_tenant()
    users = [data(box.post("/v1/users", json={"email": f"rl{i}@e.example", "tenant_id": tenant}), 201)
             for i in range(2)]
    keys = [data(box.post("/v1/api-keys", json={"name": "rl", "assigned_user_id": u["id"]}), 201)["key"]
            for u in users]
    data(box.patch(f"/v1/users/{users[0]['id']}", json={"rate_limit": 2}))
    data(box.patch(f"/v1/tenants/{tenant}", json={"rate_limit": 3}))
    if time.time() % 60 > 45:  # the windows are calendar minutes: run within one
        time.sleep(61 - time.time() % 60)
    with world.appliance.client(keys[0]) as first, world.appliance.client(keys[1]) as second:
        statuses = [first.get("/v1/models").status_code for _ in range(3)]
        assert statuses == [200, 200, 429]  # the user's limit
        assert "key's user may make 2 requests a minute" in first.get("/v1/models").json()["error"]["message"]
        assert [second.get("/v1/models").status_code for _ in range(2)] == [200, 429]  # the tenant's: 2 + 1 = 3
        assert "key's tenant" in second.get("/v1/models").json()["error"]["message"]


def test_deleting_a_user_revokes_their_keys_at_once_and_suspending_stops_them(world: World) -> None:
    admin = world.parties["A.admin"].client
    user = data(admin.post("/v1/users", json={"email": "leaver@a.example"}), 201)
    key = data(admin.post("/v1/api-keys", json={"name": "leaver", "assigned_user_id": user["id"]}), 201)
    assert key["tenant_id"] == world.tenants["A"] and key["assigned_user_id"] == user["id"]
    with world.appliance.client(key["key"]) as client:
        assert client.get("/v1/models").status_code == 200
        data(admin.patch(f"/v1/users/{user['id']}", json={"status": "suspended"}))
        assert "suspended" in error(client.get("/v1/models"), 401, "AUTH_TOKEN_INVALID")["message"]
        data(admin.patch(f"/v1/users/{user['id']}", json={"status": "active"}))
        assert client.get("/v1/models").status_code == 200
        assert data(admin.delete(f"/v1/users/{user['id']}"))["status"] == "deleted"
        error(client.get("/v1/models"), 401, "AUTH_TOKEN_INVALID")
    assert data(admin.get(f"/v1/api-keys/{key['id']}"))["status"] == "revoked"
    error(admin.get(f"/v1/users/{user['id']}"), 404, "NOT_FOUND")


def test_the_box_keeps_its_last_box_admin(world: World) -> None:
    box = world.box.client
    others = [u["id"] for u in data(box.get("/v1/users", params={"limit": 1000, "status": "active"}))["items"]
              if "box_admin" in u["roles"] and u["id"] != world.box.user_id]  # made by the table's rows
    for other in others:
        data(box.patch(f"/v1/users/{other}", json={"status": "suspended"}))
    try:
        refused = box.put(f"/v1/users/{world.box.user_id}/roles", json={"roles": ["tenant_admin"]})
        assert "last active box_admin" in error(refused, 422, "VALIDATION_ERROR")["message"]
    finally:
        for other in others:
            data(box.patch(f"/v1/users/{other}", json={"status": "active"}))


def test_me_shows_the_key_its_user_tenant_permissions_and_the_users_keys(world: World) -> None:
    viewer = world.parties["A.viewer"]
    me = data(viewer.client.get("/v1/me"))
    assert (me["user"]["id"], me["tenant"]["id"], me["role"]) == (viewer.user_id, world.tenants["A"], "tenant_viewer")
    assert me["permissions"] == ["accounting:view_own", "models:list"]
    assert viewer.key_id in {k["id"] for k in me["keys"]} and all("key" not in k for k in me["keys"])


# --- the audit log -----------------------------------------------------------------------------------------------

def events(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    return data(client.get("/v1/audit-log", params={"limit": 1000, **params}))["items"]


def test_a_change_and_its_event_are_recorded_together_with_who_where_and_how(world: World) -> None:
    admin = world.parties["A.admin"]
    answer = admin.client.post("/v1/users", json={"email": "audited@a.example", "roles": ["tenant_viewer"]},
                               headers={"User-Agent": "audit-test/1.0", "X-Request-ID": "req-audit-create"})
    user = data(answer, 201)
    [event] = events(admin.client, resource_id=user["id"])
    assert event["action"] == "user.create" and event["status"] == "SUCCESS"
    assert (event["actor_id"], event["actor_email"], event["actor_type"]) == (admin.user_id, "admin@a.example", "user")
    assert (event["tenant_id"], event["resource_type"], event["ip_address"]) == (world.tenants["A"], "user",
                                                                                   "127.0.0.1")
    assert (event["user_agent"], event["request_id"]) == ("audit-test/1.0", "req-audit-create")
    roles = admin.client.put(f"/v1/users/{user['id']}/roles", json={"roles": ["tenant_user"]})
    data(roles)
    assert [e["action"] for e in events(admin.client, resource_id=user["id"])] == ["user.role_update", "user.create"]


def test_denied_attempts_are_recorded_as_failures_and_stay_in_the_callers_tenant(world: World) -> None:
    viewer, admin_a, admin_b = world.parties["A.viewer"], world.parties["A.admin"], world.parties["B.admin"]
    error(viewer.client.post("/v1/api-keys", json={"name": "not allowed"}), 403, "AUTHZ_PERMISSION_DENIED")
    probe = admin_a.client.delete(f"/v1/users/{world.parties['B.user'].user_id}")
    error(probe, 404, "NOT_FOUND")
    with world.appliance.client("sgk_" + "x" * 40) as stranger:
        error(stranger.post("/v1/tenants", json={"name": "x"}), 401, "AUTH_TOKEN_INVALID")
    failures = events(admin_a.client, status="FAILURE")
    denied = next(e for e in failures if e["actor_id"] == viewer.user_id and e["action"] == "api_key.create")
    assert denied["details"]["error_code"] == "AUTHZ_PERMISSION_DENIED" and denied["details"]["status_code"] == 403
    probed = next(e for e in failures if e["request_id"] == probe.headers["x-scaigrid-request-id"])
    assert (probed["action"], probed["tenant_id"]) == ("user.delete", world.tenants["A"])
    assert probe.headers["x-scaigrid-request-id"] not in {e["request_id"] for e in events(admin_b.client)}
    anonymous = events(world.box.client, status="FAILURE", action="tenant.create")
    assert any(e["actor_type"] == "anonymous" and e["details"]["error_code"] == "AUTH_TOKEN_INVALID"
               for e in anonymous)


def test_audit_filters_and_export(world: World) -> None:
    admin = world.parties["A.admin"].client
    made = data(admin.post("/v1/api-keys", json={"name": "filtered"}), 201)
    data(admin.delete(f"/v1/api-keys/{made['id']}"))
    deleted = events(admin, action="api_key.delete", resource_type="api_key", resource_id=made["id"],
                     actor_id=world.parties["A.admin"].user_id, status="SUCCESS", ip_address="127.0.0.1")
    assert len(deleted) == 1
    assert events(admin, action="api_key.delete", start="2999-01-01T00:00:00Z") == []
    lines = admin.get("/v1/audit-log/export", params={"format": "ndjson", "action": "api_key.create"}).text
    exported = [json.loads(line) for line in lines.splitlines()]
    assert made["id"] in {e["resource_id"] for e in exported}
    assert {e["tenant_id"] for e in exported} == {world.tenants["A"]}
    page = data(admin.get("/v1/audit-log", params={"limit": 2}))
    assert len(page["items"]) == 2 and page["has_more"]
    after = data(admin.get("/v1/audit-log", params={"limit": 2, "cursor": page["next_cursor"]}))["items"]
    assert {e["id"] for e in after}.isdisjoint({e["id"] for e in page["items"]})


def test_the_audit_log_is_append_only_and_verify_names_a_hand_edited_event(world: World, tmp_path: Path) -> None:
    state = world.appliance.state_dir
    with sqlite3.connect(state / "appliance.db") as live:
        for statement in ("UPDATE audit_log SET actor_id = 'mallory'", "DELETE FROM audit_log"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                live.execute(statement)
    ok = cli("audit", "verify", state_dir=state)
    assert ok.returncode == 0 and "the chain is intact" in ok.stdout, ok.stderr
    copy = tmp_path / "copy"
    copy.mkdir()
    with sqlite3.connect(state / "appliance.db") as live, sqlite3.connect(copy / "appliance.db") as target:
        live.backup(target)
    with sqlite3.connect(copy / "appliance.db") as doctored:  # what someone with the DB file could do
        doctored.execute("DROP TRIGGER audit_log_no_update")
        victim = doctored.execute("SELECT id FROM audit_log ORDER BY seq LIMIT 1 OFFSET 4").fetchone()[0]
        doctored.execute("UPDATE audit_log SET status = 'SUCCESS', actor_id = 'someone else' WHERE id = ?", (victim,))
    caught = cli("audit", "verify", state_dir=copy)
    assert caught.returncode == 1 and victim in caught.stderr and "edited" in caught.stderr, caught.stderr
