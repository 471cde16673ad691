"""The stored responses: chains followed only within one key, background jobs claimed by one runner at a time, a
result written only by its owner and never over a cancel, retention, and the writer's group commits."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from appliance.db.database import open_database
from appliance.db.responses import ResponseRow
from appliance.serving.response_store import ResponseStore, StoreWriter


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("responses-db") / "state.db"
    open_database(f"sqlite:///{path}").dispose()
    return path


@pytest.fixture
def engine(migrated: Path, tmp_path: Path) -> Engine:
    """A fresh DB at the head revision (a copy: the migrations run once per module)."""
    shutil.copy(migrated, tmp_path / "state.db")
    return open_database(f"sqlite:///{tmp_path / 'state.db'}")


def row(response_id: str, key: str = "key_a", previous: str | None = None, status: str = "completed",
        **more: Any) -> dict[str, Any]:
    return {"id": response_id, "key_id": key, "model": "m", "status": status, "background": False, "stream": False,
            "previous_response_id": previous, "created_at": datetime.now(UTC), "input_items": "[]",
            "body": json.dumps({"id": response_id, "output": []}), "request": None, "owner": None,
            "claimed_at": None, "attempts": 0, **more}


def job(response_id: str, owner: str | None, claimed_ago_s: float = 0.0) -> dict[str, Any]:
    return row(response_id, status="queued", background=True, request="{}", owner=owner,
               claimed_at=datetime.now(UTC) - timedelta(seconds=claimed_ago_s), attempts=1)


def test_a_chain_is_followed_back_within_its_key_and_ends_at_a_gap(engine: Engine) -> None:
    store = ResponseStore(engine)
    store.insert([row("r1"), row("r2", previous="r1"), row("r3", previous="r2"), row("x1", key="key_b")])
    assert [r.id for r in store.chain("r3", "key_a") or []] == ["r1", "r2", "r3"]
    assert store.chain("r3", "key_b") is None and store.get("r3", "key_b") is None  # another key's: unknown
    assert store.chain("nope", "key_a") is None
    store.delete("r1", "key_a")
    assert [r.id for r in store.chain("r3", "key_a") or []] == ["r2", "r3"]


def test_only_one_runner_takes_over_a_stale_job_and_only_the_owner_writes_its_result(engine: Engine) -> None:
    store = ResponseStore(engine)
    store.insert([job("fresh", "runner_a"), job("stale", "runner_dead", claimed_ago_s=60), job("free", None)])
    taken_b = store.claim_orphans("runner_b", stale_s=30)
    taken_c = store.claim_orphans("runner_c", stale_s=30)
    assert sorted(r.id for r in taken_b) == ["free", "stale"] and taken_c == []
    assert {r.attempts for r in taken_b} == {2}
    assert not store.start("stale", "runner_dead", "{}")  # the dead runner, back, owns nothing
    assert store.start("stale", "runner_b", "{}")
    assert not store.finish("stale", "runner_dead", "completed", "{}")
    assert store.finish("stale", "runner_b", "completed", '{"done": true}', [(0, "event: response.created")])
    assert store.get("stale", "key_a").status == "completed"  # type: ignore[union-attr]
    assert store.events("stale", -1) == [(0, "event: response.created")]
    assert store.renew("runner_a") == {"fresh"} and store.renew("runner_b") == {"free"}


def test_a_cancel_wins_over_a_result_that_comes_after_it(engine: Engine) -> None:
    store = ResponseStore(engine)
    store.insert([job("j", "runner_a")])
    assert store.start("j", "runner_a", "{}")
    assert store.cancel("j", '{"status": "cancelled"}')
    assert not store.finish("j", "runner_a", "completed", "{}")
    assert store.get("j", "key_a").status == "cancelled"  # type: ignore[union-attr]
    assert not store.cancel("j", "{}")  # once
    assert store.renew("runner_a") == set()  # the runner learns it no longer runs it


def test_released_jobs_are_free_at_once_and_retention_deletes_only_ended_responses(engine: Engine) -> None:
    store = ResponseStore(engine)
    old = datetime.now(UTC) - timedelta(days=40)
    store.insert([job("running", "runner_a"), row("old", created_at=old), row("new"),
                  {**job("old-running", "runner_a"), "created_at": old}])
    store.add_events("old", [(0, "a"), (1, "b")])
    store.release("runner_a")
    assert sorted(r.id for r in store.claim_orphans("runner_b", stale_s=3600)) == ["old-running", "running"]
    assert store.purge(days=30) == 1
    assert store.get("old", "key_a") is None and store.events("old", -1) == []
    assert store.get("new", "key_a") is not None and store.get("old-running", "key_a") is not None


def test_the_writer_commits_what_waits_together_and_reports_a_bad_row_alone(engine: Engine) -> None:
    store = ResponseStore(engine)
    writer = StoreWriter(store)
    commits = []
    original = store.insert

    def counting(rows: list[dict[str, Any]]) -> None:
        commits.append(len(rows))
        original(rows)

    store.insert = counting  # type: ignore[method-assign]

    async def main() -> list[Any]:
        gate = threading.Event()
        writer.start()
        store.insert = lambda rows: (gate.wait(5), counting(rows))  # type: ignore[assignment, func-returns-value]
        first = writer.submit(row("w0"))
        await asyncio.sleep(0.05)  # the writer now waits inside the first commit; the rest queue behind it
        rest = [writer.submit(row(f"w{n}")) for n in range(1, 6)] + [writer.submit(row("w1"))]  # w1 twice: refused
        gate.set()
        return await asyncio.gather(first, *rest, return_exceptions=True)

    results = asyncio.run(main())
    writer.close()
    assert results[:6] == [None] * 6 and isinstance(results[6], Exception)
    assert commits[0] == 1 and commits[1] == 6  # the five and the duplicate together, then each alone
    with Session(engine) as session:
        assert session.query(ResponseRow).count() == 6
        session.execute(update(ResponseRow).values(status="failed"))
