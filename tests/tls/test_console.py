"""The console on HTTPS in headless Chromium that trusts the box's CA and nothing else: it loads with no
certificate error, plain HTTP redirects to it, it offers the CA for download, and it warns before expiry."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.tls.lifecycle import init
from appliance.tls.store import TlsPaths
from tests.support.appliance import free_port
from tests.support.browser import CHROMIUM_ARGS, NETWORK_LOG, chromium, why_no_browser
from tests.support.https import HttpsAppliance, nss_home, start_https_appliance
from tests.tls.conftest import remote_only_catalogue

pytestmark = [pytest.mark.skipif(why_no_browser() is not None, reason=why_no_browser() or ""),
              pytest.mark.skipif(shutil.which("certutil") is None,
                                 reason="needs certutil (Debian's libnss3-tools) to give Chromium the CA")]


@contextlib.contextmanager
def chromium_trusting(ca_file: Path, home: Path) -> Iterator[Any]:
    """Debian's Chromium whose only added trust is ``ca_file`` (its NSS database under HOME)."""
    from playwright.sync_api import sync_playwright

    nss_home(ca_file, home)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium(), headless=True, args=CHROMIUM_ARGS,
                                              env={**os.environ, "HOME": str(home)})
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def expiring_box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HttpsAppliance, int]]:
    """A box whose certificate has 10 days left (the console warns from 30), with the port-80 redirect beside it."""
    root = tmp_path_factory.mktemp("console-box")
    init(TlsPaths.of(root / "tls"), ["localhost", "127.0.0.1"], days=10)
    redirect_port = free_port()
    with start_https_appliance(remote_only_catalogue(root / "models.toml"), root / "state", root / "tls",
                               extra=["--http-redirect-port", str(redirect_port)]) as running:
        yield running, redirect_port


def test_the_console_loads_over_https_from_plain_http_warns_of_expiry_and_offers_the_ca(
        expiring_box: tuple[HttpsAppliance, int], tmp_path: Path) -> None:
    box, redirect_port = expiring_box
    key = box.create_key("--permission", "admin:access", "--permission", "models:list")
    with chromium_trusting(box.ca_file, tmp_path / "home") as launched:
        context = launched.new_context(accept_downloads=True)  # ignore_https_errors stays False: trust is real
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda msg: errors.append(msg.text)
                if msg.type == "error" and not msg.text.startswith(NETWORK_LOG) else None)
        answer = page.goto(f"http://localhost:{redirect_port}/console/")  # typed as plain HTTP
        assert answer is not None and answer.status == 200
        assert page.url == f"https://localhost:{box.port}/console/"
        assert answer.headers["strict-transport-security"] == "max-age=63072000"

        warning = page.locator("#cert-warning")
        warning.wait_for(state="visible", timeout=10000)
        text = warning.inner_text()
        assert re.match(r"This appliance's HTTPS certificate expires in (9|10) days \(\d{4}-\d\d-\d\d\)", text), text
        assert "appliance tls init --renew" in text and "systemctl reload appliance" in text

        with page.expect_download() as download:
            page.click("#ca-link")
        assert Path(download.value.path()).read_bytes() == box.ca_file.read_bytes()
        assert download.value.suggested_filename == "appliance-ca.pem"

        page.fill("#login-key", key)
        page.click("#login-form button")
        page.locator("#models-table").wait_for(timeout=15000)
        assert page.locator("#cert-warning").is_visible()  # stays while the operator works
        page.screenshot(path=str(tmp_path / "console-expiring.png"))
        assert not errors, errors
        context.close()


def test_chromium_without_the_ca_refuses_the_box(expiring_box: tuple[HttpsAppliance, int], tmp_path: Path) -> None:
    from playwright.sync_api import Error, sync_playwright

    box, _ = expiring_box
    (tmp_path / "home").mkdir()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium(), headless=True, args=CHROMIUM_ARGS,
                                              env={**os.environ, "HOME": str(tmp_path / "home")})
        try:
            with pytest.raises(Error, match="ERR_CERT_AUTHORITY_INVALID"):
                launched.new_page().goto(f"https://localhost:{box.port}/console/")
        finally:
            launched.close()
