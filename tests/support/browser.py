"""Headless Chromium (Debian's package) driven by Playwright's Python package: never Playwright's own download.

Every page opened here fails its test on a JavaScript error or a console error,
and records every request it makes, so a test can say where the page went.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

# Chromium's own traffic (updates, autofill, safe browsing, reporting) switched off: a page test on a box with no
# network must see the page's requests alone (tests/console/offline_page.py traps everything else).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--no-first-run",
                 "--disable-default-apps", "--disable-sync", "--metrics-recording-only", "--mute-audio",
                 "--no-pings", "--disable-domain-reliability", "--disable-client-side-phishing-detection",
                 "--safebrowsing-disable-auto-update", "--disable-breakpad", "--disable-extensions",
                 "--disable-features=AutofillServerCommunication,OptimizationHints,OptimizationGuideModelDownloading,"
                 "MediaRouter,Translate,CertificateTransparencyComponentUpdater",
                 "--autoplay-policy=no-user-gesture-required", "--disable-dev-shm-usage"]
# What the browser itself logs for an answer of 4xx/5xx ("Failed to load resource: …"): the page expects those
# (a wrong key, a 503 from /ready while loading) and says so in its own words; they are not script errors.
NETWORK_LOG = "Failed to load resource"


@functools.cache
def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@functools.cache
def why_no_browser() -> str | None:
    if chromium() is None:
        return "needs Debian's chromium package (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "needs Playwright's Python package (pip install playwright)"
    return None


needs_browser = pytest.mark.skipif(why_no_browser() is not None, reason=why_no_browser() or "")


@dataclass
class Watched:
    """A page with what went wrong in it and every URL it asked for."""

    page: Any
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        assert not self.errors, "errors in the page:\n" + "\n".join(self.errors)


@contextlib.contextmanager
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium(), headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@contextlib.contextmanager
def watched_page(launched: Any, width: int = 1280, height: int = 800) -> Iterator[Watched]:
    """A fresh context (its own sessionStorage) and page; fails the test on any page or console error."""
    context = launched.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
    page = context.new_page()
    watched = Watched(page)
    page.on("pageerror", lambda error: watched.errors.append(f"page error: {error}"))
    page.on("console", lambda msg: watched.errors.append(f"console {msg.type}: {msg.text}")
            if msg.type == "error" and not msg.text.startswith(NETWORK_LOG) else None)
    page.on("request", lambda request: watched.requests.append(request.url))
    try:
        yield watched
        watched.assert_clean()
    finally:
        context.close()
