"""Tenants, users, roles and the audit log in the console, in a real browser (Debian's chromium) on the appliance.

A box admin makes a tenant and its admin and sets their limits; the tenant's
admin manages their users and reads their tenant's audit log; a user sees
only their own keys and usage. One small appliance (the tiny embedding model,
never loaded) serves the module.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import catalogue_subset
from tests.console.test_console import screenshot
from tests.support.appliance import RunningAppliance, start_appliance
from tests.support.browser import Watched, browser, needs_browser, watched_page

pytestmark = needs_browser

EMBED = "openai/text-embedding-3-small"
INJECT = "<img src=x onerror=\"window.__injected='tenant'\">"


@pytest.fixture(scope="module")
def box(tiny_catalogue: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAppliance]:
    state = tmp_path_factory.mktemp("console-tenancy")
    with start_appliance(catalogue_subset(tiny_catalogue, [EMBED], state / "models.toml"), state) as running:
        yield running


@pytest.fixture(scope="module")
def box_key(box: RunningAppliance) -> str:
    return box.create_key(*[f"--permission={p}" for p in ("models:list", "models:use", "api_keys:manage",
                                                            "admin:access")])


@pytest.fixture(scope="module")
def chromium_browser() -> Iterator[Any]:
    with browser() as launched:
        yield launched


@pytest.fixture
def watched(chromium_browser: Any, box: RunningAppliance) -> Iterator[Watched]:
    with watched_page(chromium_browser) as page:
        yield page
        assert page.page.evaluate("window.__injected") is None, "HTML from the data ran as code"
        outside = [url for url in page.requests if not url.startswith((box.url + "/", "blob:", "data:"))]
        assert not outside, f"the page reached outside the appliance: {outside}"


def log_in(watched: Watched, box: RunningAppliance, key: str, page: str) -> Any:
    tab = watched.page
    tab.goto(box.url + "/console/")
    tab.fill("#login-key", key)
    tab.click("#login-form button")
    tab.wait_for_selector("#page[data-page=status]")
    tab.click(f"#nav a[data-page={page}]")
    tab.wait_for_selector(f"#page[data-page={page}]")
    return tab


def api(box: RunningAppliance, key: str, method: str, path: str, **body: Any) -> Any:
    with box.client(key) as client:
        answer = client.request(method, path, json=body or None)
    assert answer.status_code < 300, answer.text
    return answer.json()["data"]


def test_a_box_admin_makes_a_tenant_sets_its_limits_and_adds_its_admin(watched: Watched, box: RunningAppliance,
                                                                      box_key: str) -> None:
    tab = log_in(watched, box, box_key, "tenants")
    form = tab.locator("#create-tenant")
    form.locator("input").first.fill(INJECT + " research")
    form.locator("button[type=submit]").click()
    row = tab.locator("#tenants-table tbody tr", has_text="research")
    row.wait_for()
    assert row.locator(".key-name").inner_text().startswith("<img")  # shown as text
    row.locator("button", has_text="Limits").click()
    editor = tab.locator("form.edit-tenant")
    editor.locator("input[type=number]").nth(1).fill("5000")  # the budget's tokens
    editor.locator("button[type=submit]").click()
    tab.locator("#tenants-table tbody tr", has_text="0 / 5000 tokens (month)").wait_for()
    screenshot(tab, "tenants")
    tab.click("#nav a[data-page=users]")
    users = tab.locator("#create-user")
    users.wait_for()
    users.locator("input[type=email]").fill("lead@research.example")
    users.locator("select").first.select_option("tenant_admin")
    users.locator("select").nth(1).select_option(label=INJECT + " research")
    users.locator("button[type=submit]").click()
    lead = tab.locator("#users-table tbody tr", has_text="lead@research.example")
    lead.wait_for()
    assert lead.locator("select").input_value() == "tenant_admin"
    screenshot(tab, "users")


def test_a_tenant_admin_changes_a_role_and_reads_only_its_tenants_audit_log(watched: Watched, box: RunningAppliance,
                                                                           box_key: str) -> None:
    tenant = api(box, box_key, "POST", "/v1/tenants", name="support")
    lead = api(box, box_key, "POST", "/v1/users", email="lead@support.example", tenant_id=tenant["id"],
               roles=["tenant_admin"])
    key = api(box, box_key, "POST", "/v1/api-keys", name="lead", assigned_user_id=lead["id"],
              permissions=["admin:access"])["key"]
    with box.client(key) as client:  # a refused attempt, for the log
        assert client.post("/v1/tenants", json={"name": "not mine"}).status_code == 403
    tab = log_in(watched, box, key, "users")
    assert not tab.locator("#nav a[data-page=tenants]").is_visible()  # a tenant admin is offered no tenant page
    form = tab.locator("#create-user")
    form.locator("input[type=email]").fill("agent@support.example")
    form.locator("button[type=submit]").click()
    agent = tab.locator("#users-table tbody tr", has_text="agent@support.example")
    agent.wait_for()
    assert tab.locator("#users-table tbody tr").count() == 2  # its tenant's users alone
    agent.locator("select").select_option("tenant_viewer")
    tab.locator("#users-table tbody tr", has_text="agent@support.example").locator("select").wait_for()
    tab.wait_for_function("() => document.querySelector('#users-table').innerText.includes('agent@support.example')")
    tab.click("#nav a[data-page=audit]")
    events = tab.locator("#audit-table tbody tr")
    events.first.wait_for()
    texts = events.all_inner_texts()
    assert any("user.role_update" in t for t in texts) and not any("research" in t for t in texts)
    tab.select_option("#audit-status", "FAILURE")
    tab.locator("#audit-filters button[type=submit]").click()
    tab.wait_for_function("() => [...document.querySelectorAll('#audit-table tbody tr')].length > 0 && "
                          "[...document.querySelectorAll('#audit-table tbody tr')].every("
                          "r => r.innerText.includes('failure'))")
    refused = tab.locator("#audit-table tbody tr", has_text="tenant.create")
    assert "AUTHZ_PERMISSION_DENIED" in refused.inner_text()
    with tab.expect_download() as download:
        tab.click("#audit-export")
    assert Path(download.value.path()).read_text().startswith("id,timestamp,action")
    screenshot(tab, "audit")


def test_a_user_sees_their_own_keys_and_usage_and_no_admin_pages(watched: Watched, box: RunningAppliance,
                                                                 box_key: str) -> None:
    tenant = api(box, box_key, "POST", "/v1/tenants", name="sales")
    user = api(box, box_key, "POST", "/v1/users", email="rep@sales.example", tenant_id=tenant["id"])
    api(box, box_key, "PATCH", f"/v1/users/{user['id']}", budget={"period": "day", "tokens": 1234})
    keys = [api(box, box_key, "POST", "/v1/api-keys", name=f"rep key {n}", assigned_user_id=user["id"],
                permissions=["models:list", "models:use", "api_keys:manage", "accounting:view_own"])
            for n in (1, 2)]
    tab = log_in(watched, box, keys[0]["key"], "account")
    for page in ("users", "tenants", "audit"):
        assert not tab.locator(f"#nav a[data-page={page}]").is_visible()
    mine = tab.locator("#my-keys tbody tr")
    mine.first.wait_for()
    assert sorted(mine.locator(".key-name").all_inner_texts()) == ["rep key 1", "rep key 2"]
    assert "this key" in mine.filter(has_text="rep key 1").inner_text()
    assert "0 / 1234 tokens (day)" in tab.locator("#page").inner_text()
    assert "tenant_user" in tab.locator("#me-summary").inner_text()
    tab.click("#nav a[data-page=usage]")
    tab.locator("#usage-table").wait_for()
    tab.locator("select").nth(1).select_option("user")
    tab.locator("#usage-table").wait_for()
    screenshot(tab, "account")
    with httpx.Client(base_url=box.url, headers={"Authorization": f"Bearer {keys[0]['key']}"}) as client:
        assert client.get("/v1/users").status_code == 403  # what the missing nav links stand for
