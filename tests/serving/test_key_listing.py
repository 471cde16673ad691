"""The key list reads one page of keys, not every key for each page (issue 21, item 13: 16 → 160 ms at 3,000
keys, because each page loaded them all)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

from sqlalchemy import event

from appliance.accounting.budgets import Budgets
from appliance.db.database import open_database
from appliance.db.keys import KeyStore
from appliance.db.tables import ApiKeyRow
from appliance.serving.keys import listing
from appliance.tenancy.caller import Directory


def test_a_page_of_keys_loads_that_page_and_no_more(tmp_path: Path) -> None:
    engine = open_database(f"sqlite:///{tmp_path / 'keys.db'}")
    store = KeyStore(engine)
    admin, _ = store.create("admin", ["models:use", "api_keys:manage", "admin:access"])
    for number in range(300):
        store.create(f"key {number}")
    caller = Directory(store).caller_of(admin)
    runtime = SimpleNamespace(keys=store, accounting=SimpleNamespace(budgets=Budgets(engine)))
    loaded: list[str] = []
    event.listen(ApiKeyRow, "load", lambda row, _context: loaded.append(row.id))

    first, more = asyncio.run(listing(runtime, caller, 10, None))  # type: ignore[arg-type]
    assert len(first) == 10 and more and len(loaded) <= 11
    loaded.clear()
    second, _ = asyncio.run(listing(runtime, caller, 10, first[-1].id))  # type: ignore[arg-type]
    assert len(loaded) <= 12  # the cursor's row, the page and one to tell whether there is more
    assert [key.name for key in second] == [f"key {number}" for number in range(9, 19)]
    assert not {key.id for key in first} & {key.id for key in second}
