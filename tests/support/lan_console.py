"""Run in the client's namespace: Chromium (trusting the box's CA only) opens the console as a LAN user would.
`python -m tests.support.lan_console URL KEY CA_FILE HOME SCREENSHOT` prints one JSON line of what it saw."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from tests.support.browser import CHROMIUM_ARGS, NETWORK_LOG, chromium
from tests.support.https import nss_home


def main() -> None:
    url, key, ca_file, home, screenshot = sys.argv[1:6]
    from playwright.sync_api import sync_playwright

    nss_home(Path(ca_file), Path(home))
    seen: dict[str, object] = {"errors": []}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), headless=True, args=CHROMIUM_ARGS,
                                             env={**os.environ, "HOME": home})
        page = browser.new_page()
        page.on("console", lambda msg: seen["errors"].append(msg.text)  # type: ignore[union-attr]
                if msg.type == "error" and not msg.text.startswith(NETWORK_LOG) else None)
        page.on("pageerror", lambda error: seen["errors"].append(str(error)))  # type: ignore[union-attr]
        page.on("requestfailed", lambda request: seen["errors"].append(  # type: ignore[union-attr]
            f"{request.url}: {request.failure}"))
        try:
            answer = page.goto(url)
            seen["status"], seen["url"] = (answer.status if answer else None), page.url
            page.fill("#login-key", key)
            page.click("#login-form button")
            page.locator("#models-table").wait_for(timeout=30000)
            seen["models"] = page.locator("#models-table tbody tr").count()
            seen["ca_link"] = page.locator("#ca-link").is_visible()
        finally:
            page.screenshot(path=screenshot)
            print(json.dumps(seen), file=sys.stderr)
            browser.close()
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
