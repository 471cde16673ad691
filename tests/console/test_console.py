"""The web console in a real browser (Debian's chromium, headless, driven by Playwright) on the real appliance.

One appliance serves the tiny models the pages need, plus a model that cannot
load (an empty directory) and two chat models on the FAKE backend
(tests/support/fake_backend.py) for what no real engine does on demand: an
answer made of HTML, and a stream cut mid-way. Model and key names carry
HTML too; ``window.__injected`` would be set if any of it ever ran.
Screenshots of every page land in build/console-screenshots/.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import tomli_w

from tests.batch.helpers import b64, chat_line
from tests.conftest import REPO, catalogue_subset
from tests.support.appliance import RunningAppliance, start_appliance
from tests.support.audio import audio_file
from tests.support.browser import Watched, browser, needs_browser, watched_page
from tests.support.fake_backend import serve_fake
from tests.support.netns import needs_namespace, offline

pytestmark = needs_browser

CHAT = "scailabs/tiny-chat"
EMBED = "openai/text-embedding-3-small"
RERANK = "scailabs/tiny-rerank"
IMAGE = "stability/sd-xl"
SPEECH = "openai/tts-1"
WHISPER = "openai/whisper-1"
BROKEN = "broken/chat"
MARKUP = "fake/markup"
CUT = "fake/cut"
INJECT = "<img src=x onerror=\"window.__injected='{}'\"><script>window.__injected='{}'</script>"
SHOTS = Path(__file__).resolve().parents[2] / "build" / "console-screenshots"
WAIT_MS = 180_000  # an on-demand model loads on its first request (2 shared cores)


@pytest.fixture(scope="module")
def console(tiny_catalogue: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAppliance]:
    state = tmp_path_factory.mktemp("console-state")
    models = []
    for table in tomllib.loads(tiny_catalogue.read_text())["model"]:
        if table["slug"] in (CHAT, EMBED, RERANK, IMAGE, SPEECH, WHISPER):
            table = {**table, "path": str((tiny_catalogue.parent / table["path"]).resolve()),
                     "load": "startup" if table["slug"] == CHAT else "on-demand"}
            if table["slug"] == CHAT:
                table["display_name"] = INJECT.format("model", "model") + " tiny chat"
            models.append(table)
    empty = state / "empty-model"
    empty.mkdir()
    models.append({"slug": BROKEN, "display_name": "A model that cannot load", "modality": "chat",
                   "engine": "transformers", "path": str(empty)})
    with serve_fake(state / "fake.log") as fake:
        for slug, mode in ((MARKUP, "markup"), (CUT, "cut")):
            models.append({"slug": slug, "modality": "chat", "engine": "remote", "url": [f"{fake}/{mode}/v1"],
                           "remote_model": "fake-model"})
        catalogue = state / "models.toml"
        catalogue.write_text(tomli_w.dumps({"model": models}))
        with start_appliance(catalogue, state, env={"APPLIANCE_REQUEST_WAIT_S": "240"}) as running:
            yield running


@pytest.fixture(scope="module")
def admin_key(console: RunningAppliance) -> str:
    return console.create_key(*[f"--permission={p}" for p in
                                ("models:list", "models:use", "api_keys:manage", "admin:access")])


@pytest.fixture(scope="module")
def chromium_browser() -> Iterator[Any]:
    with browser() as launched:
        yield launched


@pytest.fixture
def watched(chromium_browser: Any, console: RunningAppliance) -> Iterator[Watched]:
    with watched_page(chromium_browser) as page:
        yield page
        assert page.page.evaluate("window.__injected") is None, "HTML from the data ran as code"
        outside = [url for url in page.requests if not url.startswith((console.url + "/", "blob:", "data:"))]
        assert not outside, f"the page reached outside the appliance: {outside}"


def log_in(watched: Watched, console: RunningAppliance, key: str, page: str = "status") -> Any:
    tab = watched.page
    tab.goto(console.url + "/")  # redirects to /console/
    tab.fill("#login-key", key)
    tab.click("#login-form button")
    tab.wait_for_selector("#page[data-page=status]")
    if page != "status":
        tab.click(f"#nav a[data-page={page}]")
        tab.wait_for_selector(f"#page[data-page={page}]")
    return tab


def card(tab: Any, title: str) -> Any:
    return tab.locator("section.card", has=tab.locator("h2", has_text=title))


def model_row(tab: Any, slug: str) -> Any:
    return tab.locator("#models-table tbody tr", has=tab.locator(".mono", has_text=slug))


def screenshot(tab: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_served_with_a_policy_that_allows_nothing_outside(console: RunningAppliance) -> None:
    page = httpx.get(console.url + "/", follow_redirects=True)
    assert page.url.path == "/console/" and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self';" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    script = httpx.get(console.url + "/console/js/main.js")
    assert script.headers["content-type"].startswith("text/javascript")
    missing = httpx.get(console.url + "/console/%2E%2E/%2E%2E/routes.py")  # only the console's own files
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NOT_FOUND"
    assert "/console/" not in httpx.get(console.url + "/openapi.json").text


def test_status_shows_every_model_and_its_state(watched: Watched, console: RunningAppliance, admin_key: str) -> None:
    tab = log_in(watched, console, admin_key)
    model_row(tab, CHAT).locator(".badge", has_text="loaded").wait_for()
    for slug in (CHAT, EMBED, IMAGE, SPEECH, WHISPER, BROKEN, MARKUP, CUT):
        assert model_row(tab, slug).count() == 1, slug
    assert model_row(tab, BROKEN).locator(".badge").inner_text() == "unloaded"
    assert model_row(tab, CUT).locator(".badge").inner_text() == "remote"
    name = model_row(tab, CHAT).locator(".model-name").inner_text()
    assert name.startswith("<img src=x onerror=") and "<script>" in name  # shown as text
    assert tab.locator(".summary", has_text="Version").is_visible()


def test_a_wrong_key_gets_a_clear_message(watched: Watched, console: RunningAppliance) -> None:
    tab = watched.page
    tab.goto(console.url + "/console/")
    tab.fill("#login-key", "sgk_" + "x" * 40)
    tab.click("#login-form button")
    error = tab.locator("#login-error")
    error.wait_for()
    assert "unknown, revoked or expired" in error.inner_text()
    screenshot(tab, "login-wrong-key")


def test_a_key_without_the_permission_is_told_which(watched: Watched, console: RunningAppliance) -> None:
    tab = log_in(watched, console, console.create_key("--permission=models:use"), page="keys")
    alert = tab.locator("#page .error").first
    alert.wait_for()
    assert "lacks the permission 'api_keys:manage'" in alert.inner_text()


def test_chat_streams_into_the_page(watched: Watched, console: RunningAppliance, admin_key: str) -> None:
    tab = log_in(watched, console, admin_key, page="playground")
    chat = card(tab, "Chat")
    chat.locator("select").select_option(CHAT)
    chat.locator("button", has_text="Send").click()
    chat.locator(".done").wait_for(timeout=WAIT_MS)
    assert tab.locator("#chat-output").inner_text().strip()
    assert "curl -sN" in chat.locator(".snippet-curl").text_content()
    assert "requests.post" in chat.locator(".snippet-python").text_content()


def test_chat_output_made_of_html_is_shown_as_text(watched: Watched, console: RunningAppliance,
                                                   admin_key: str) -> None:
    tab = log_in(watched, console, admin_key, page="playground")
    chat = card(tab, "Chat")
    chat.locator("select").select_option(MARKUP)
    chat.locator("button", has_text="Send").click()
    chat.locator(".done").wait_for(timeout=WAIT_MS)
    assert "<script>window.__injected='chat'</script>" in tab.locator("#chat-output").inner_text()
    assert tab.locator("#chat-output img, #chat-output script").count() == 0


def test_a_stream_cut_mid_way_is_explained(watched: Watched, console: RunningAppliance, admin_key: str) -> None:
    tab = log_in(watched, console, admin_key, page="playground")
    chat = card(tab, "Chat")
    chat.locator("select").select_option(CUT)
    chat.locator("button", has_text="Send").click()
    alert = chat.locator(".error")
    alert.wait_for(timeout=WAIT_MS)
    assert alert.inner_text().strip()
    assert tab.locator("#chat-output").inner_text() == "hi"  # what arrived stays


def test_every_modality_of_the_playground_answers(watched: Watched, console: RunningAppliance,
                                                          admin_key: str, tmp_path: Path) -> None:
    tab = log_in(watched, console, admin_key, page="playground")
    chat = card(tab, "Chat")
    chat.locator("select").select_option(CHAT)
    chat.locator("button", has_text="Send").click()
    card(tab, "Embeddings").locator("button", has_text="Compare").click()
    cosine = tab.locator("#cosine strong")
    cosine.wait_for(timeout=WAIT_MS)
    assert -1.0 <= float(cosine.inner_text()) <= 1.0

    rerank = card(tab, "Rerank")
    rerank.locator("textarea").fill("Paris is the capital of France.\n" + INJECT.format("rerank", "rerank")
                                    + "\nBerlin is the capital of Germany.")
    rerank.locator("button", has_text="Rank").click()
    ranked = tab.locator("#rerank-results tbody tr")
    ranked.first.wait_for(timeout=WAIT_MS)
    assert ranked.count() == 3
    assert any("<script>" in ranked.nth(i).inner_text() for i in range(3))  # a document is text, never markup
    assert "/v1/inference/rerank" in rerank.locator(".snippet-curl").text_content()

    card(tab, "Images").locator("button", has_text="Generate").click()
    tab.wait_for_function("() => { const i = document.getElementById('generated-image');"
                          " return i && i.complete && i.naturalWidth > 0; }", timeout=WAIT_MS)

    card(tab, "Speech").locator("button", has_text="Speak").click()
    tab.wait_for_function("() => { const a = document.getElementById('speech-audio');"
                          " return a && a.readyState >= 1 && a.duration > 0; }", timeout=WAIT_MS)

    wav = tmp_path / "tone.wav"
    wav.write_bytes(audio_file(1.5))
    transcription = card(tab, "Transcription")
    transcription.locator("input[type=file]").set_input_files(str(wav))
    transcription.locator("button", has_text="Transcribe").click()
    tab.locator("#transcript").wait_for(timeout=WAIT_MS)
    assert "-F file=@tone.wav" in transcription.locator(".snippet-curl").text_content()
    chat.locator(".done").wait_for(timeout=WAIT_MS)
    screenshot(tab, "playground-1280")


def test_keys_are_created_once_shown_restricted_and_revoked(watched: Watched, console: RunningAppliance,
                                                            admin_key: str) -> None:
    tab = log_in(watched, console, admin_key, page="keys")
    name = INJECT.format("key", "key")
    form = tab.locator("#create-key")
    form.locator("input").first.fill(name)
    form.locator("button[type=submit]").click()
    secret = tab.locator("#new-key-secret")
    secret.wait_for()
    key = secret.input_value()
    assert key.startswith("sgk_")
    assert httpx.get(console.url + "/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    row = tab.locator("#keys-table tbody tr", has=tab.locator(".key-name", has_text="onerror"))
    assert row.locator(".key-name").inner_text() == name
    screenshot(tab, "keys-1280")

    row.locator("button", has_text="Restrict").click()
    row.locator(".restrict input").first.fill(CHAT)
    row.locator(".restrict button[type=submit]").click()
    row.locator("td", has_text=CHAT).wait_for()

    row.locator("button", has_text="Revoke").click()
    row.locator("button", has_text="Confirm revoke").click()
    row.locator(".badge", has_text="revoked").wait_for()
    answer = httpx.get(console.url + "/v1/models", headers={"Authorization": f"Bearer {key}"})
    assert answer.json()["error"]["code"] == "AUTH_TOKEN_INVALID"


def test_usage_charts_tables_and_exports_what_was_used(watched: Watched, console: RunningAppliance,
                                                       admin_key: str) -> None:
    with console.client(admin_key) as http:  # this module's usage so far may still be in the writer's queue
        assert http.post("/v1/inference/embed", json={"model": EMBED, "input": "usage"}).status_code == 200
    tab = log_in(watched, console, admin_key, page="usage")
    tab.locator("#usage-table td", has_text=EMBED).wait_for()
    assert tab.locator("svg.chart rect.chart-bar").count() >= 1
    with tab.expect_download() as download:
        tab.click("#usage-csv")
    text = Path(download.value.path()).read_text()
    assert text.startswith("model,request_count,") and EMBED in text
    screenshot(tab, "usage-1280")


def test_a_batch_in_progress_is_cancelled_from_the_page(watched: Watched, console: RunningAppliance,
                                                        admin_key: str) -> None:
    lines = [chat_line(f"line-{i}", max_tokens=48) for i in range(200)]
    with console.client(admin_key) as http:
        batch = http.post("/v1/inference/batch", json={"input_file_base64": b64(lines)}).json()["data"]
    tab = log_in(watched, console, admin_key, page="batches")
    row = tab.locator("#batches-table tbody tr", has=tab.locator(".mono", has_text=batch["id"]))
    row.locator("button", has_text="Cancel").click()
    row.locator(".badge", has_text="cancel").wait_for()  # cancelling, then cancelled
    with console.client(admin_key) as http:
        status = http.get(f"/v1/inference/batch/{batch['id']}").json()["data"]["status"]
    assert status in ("cancelling", "cancelled")
    screenshot(tab, "batches-1280")


def test_models_are_loaded_and_unloaded_and_a_failed_load_says_why(watched: Watched, console: RunningAppliance,
                                                                  admin_key: str) -> None:
    tab = log_in(watched, console, admin_key)
    broken = model_row(tab, BROKEN)
    broken.locator("[aria-label^='Load ']").click()
    broken.locator(".badge", has_text="failed").wait_for(timeout=WAIT_MS)
    assert broken.locator(".model-error").inner_text().strip()
    screenshot(tab, "status-1280")
    broken.locator("[aria-label^='Unload ']").click()
    broken.locator(".badge", has_text="unloaded").wait_for(timeout=WAIT_MS)

    embed = model_row(tab, EMBED)  # loaded by the usage test's request
    embed.locator("[aria-label^='Unload ']").click()
    embed.locator(".badge", has_text="unloaded").wait_for(timeout=WAIT_MS)
    embed.locator("[aria-label^='Load ']").click()
    embed.locator(".badge", has_text="loaded").wait_for(timeout=WAIT_MS)


@pytest.mark.parametrize("page", ["status", "keys", "usage", "batches", "playground", "users", "tenants", "audit",
                                  "account"])
def test_every_page_fits_a_phone(chromium_browser: Any, console: RunningAppliance, admin_key: str,
                                 page: str) -> None:
    with watched_page(chromium_browser, 390, 844) as phone:
        tab = log_in(phone, console, admin_key, page=page)
        tab.wait_for_load_state("networkidle")
        tab.wait_for_timeout(500)  # the page's first refresh is drawn
        width = tab.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the {page} page is {width} px wide on a 390 px screen"
        screenshot(tab, f"{page}-390")


@needs_namespace
def test_the_console_works_with_the_network_cut(tiny_catalogue: Path, tmp_path: Path) -> None:
    catalogue = catalogue_subset(tiny_catalogue, [EMBED], tmp_path / "models.toml")
    report_path = tmp_path / "report.json"
    result = subprocess.run(offline([sys.executable, "-m", "tests.console.offline_page", "--catalogue",
                                     str(catalogue), "--state", str(tmp_path / "state"), "--report",
                                     str(report_path)]), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(report_path.read_text())
    assert report["page"]["states"] == ["loaded"]
    assert report["page"]["errors"] == [] and report["page"]["failed"] == []
    assert all(url.startswith((report["origin"] + "/", "blob:", "data:")) for url in report["page"]["requests"])
    # The traps see every name looked up in the namespace. Chromium itself still asks for its update and
    # autofill services despite the switches that turn them off (tests/support/browser.py); nothing else may.
    looked_up = {dns_name(hit) for hit in report["trap_hits"]}
    assert looked_up <= CHROMIUM_OWN_SERVICES, looked_up - CHROMIUM_OWN_SERVICES


CHROMIUM_OWN_SERVICES = {"update.googleapis.com", "clients2.google.com", "content-autofill.googleapis.com"}


def dns_name(hit: str) -> str:
    """The name a trapped DNS query asked for (``udp 53 from (…): b'…'``); the hit itself if it was not DNS."""
    if not hit.startswith("udp 53"):
        return hit
    query = ast.literal_eval(hit.split(": ", 1)[1])  # the question, as the trap recorded it
    labels = []
    while query and query[0]:
        labels.append(query[1:1 + query[0]].decode())
        query = query[1 + query[0]:]
    return ".".join(labels)


def test_a_remote_model_is_not_loaded_or_unloaded_from_here(console: RunningAppliance, admin_key: str) -> None:
    with console.client(admin_key) as http:
        for action in ("load", "unload"):
            answer = http.post(f"/v1/admin/models/{CUT}/{action}")
            assert answer.status_code == 422 and answer.json()["error"]["code"] == "VALIDATION_ERROR"
            assert "remote backends" in answer.json()["error"]["message"]
