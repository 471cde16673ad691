"""Run inside a network namespace with loopback only: the appliance, and Chromium opening its console.

`python -m tests.console.offline_page --catalogue C --state S --report R`. Every address is routed to
loopback and the airgap traps (tests/support/airgap.py) listen on DNS, HTTP and HTTPS, so a page that
reached for a CDN, a font or a script elsewhere is recorded instead of failing unseen.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from tests.support.airgap import Traps, route_everything_to_loopback
from tests.support.appliance import start_appliance
from tests.support.browser import browser, watched_page

PAGES = ("status", "keys", "usage", "batches", "users", "tenants", "audit", "account", "playground")


def visit(url: str, key: str) -> dict[str, Any]:
    """Log in, open every page; what the page asked for, what failed, what the status page shows."""
    with browser() as launched, watched_page(launched) as watched:
        tab = watched.page
        failed: list[str] = []
        tab.on("requestfailed", lambda request: failed.append(f"{request.url}: {request.failure}"))
        tab.goto(url + "/console/")
        tab.fill("#login-key", key)
        tab.click("#login-form button")
        tab.wait_for_selector("#models-table .badge")
        states = tab.locator("#models-table .badge").all_inner_texts()
        for page in PAGES:
            tab.click(f"#nav a[data-page={page}]")
            tab.wait_for_selector(f"#page[data-page={page}] .card, #page[data-page={page}] table")
        tab.locator("button", has_text="Compare").click()
        tab.wait_for_selector("#cosine strong", timeout=120_000)
        return {"requests": watched.requests, "failed": failed, "states": states, "errors": list(watched.errors)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--catalogue", required=True, type=Path)
    parser.add_argument("--state", required=True, type=Path)
    parser.add_argument("--report", required=True, type=Path)
    args = parser.parse_args()
    route_everything_to_loopback()
    traps = Traps()
    with start_appliance(args.catalogue, args.state) as running:
        report: dict[str, Any] = {"origin": running.url,
                                  "page": visit(running.url, running.create_key("--permission=admin:access",
                                                                                "--permission=models:list",
                                                                                "--permission=models:use"))}
    time.sleep(0.5)  # a datagram sent at the very end still reaches the trap
    report["trap_hits"] = traps.hits
    args.report.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
