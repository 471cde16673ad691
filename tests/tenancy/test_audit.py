"""The audit log on a real state DB: events chained in order, in the change's transaction, and tamper-evident."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from appliance.db.database import open_database
from appliance.db.keys import KeyStore
from appliance.tenancy.audit import AuditEvent, AuditFilter, AuditLog, verify
from tests.support.postgres import postgres_server, why_unavailable


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@pytest.fixture
def db(path: Path) -> Engine:
    return open_database(f"sqlite:///{path}")


def test_an_event_commits_with_its_change_or_not_at_all(db: Engine) -> None:
    log, keys = AuditLog(db), KeyStore(db)
    event = AuditEvent("api_key.create", actor_id="usr_x", resource_type="api_key")
    with log.change(event) as session:
        key, _secret = keys.create("audited", session=session)
        event.resource_id = key.id
    failed = AuditEvent("api_key.create", actor_id="usr_x")
    with pytest.raises(RuntimeError), log.change(failed) as session:
        keys.create("never", session=session)
        raise RuntimeError("the change failed half-way")
    rows, _ = log.page(AuditFilter(), 10)
    assert [(r.action, r.resource_id) for r in rows] == [("api_key.create", key.id)]
    assert [k.name for k in keys.list()] == ["audited"]  # the failed change left nothing either
    assert verify(log).intact and verify(log).checked == 1


def test_concurrent_writers_make_one_unbroken_chain(db: Engine) -> None:
    log = AuditLog(db)
    start = threading.Barrier(20)

    def writer(index: int) -> None:
        start.wait()
        for n in range(5):
            log.record(AuditEvent("test.write", actor_id=f"writer-{index}", details={"n": n}))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    verdict = verify(log)
    assert verdict.intact and verdict.checked == 100


def doctored(path: Path, *statements: str) -> None:
    """Change the DB file as someone with the file (not the application) could: the triggers dropped first."""
    with sqlite3.connect(path) as connection:
        connection.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
        connection.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
        for statement in statements:
            connection.execute(statement)


@pytest.fixture
def five(db: Engine) -> list[str]:
    log = AuditLog(db)
    return [log.record(AuditEvent("test.write", actor_id="usr_x", details={"n": n})) for n in range(5)]


@pytest.mark.parametrize(("statements", "bad", "problem"), [
    (["UPDATE audit_log SET actor_id = 'usr_y' WHERE seq = 3"], 3, "edited"),
    (["UPDATE audit_log SET details = '{\"n\": 9}' WHERE seq = 2"], 2, "edited"),
    (["DELETE FROM audit_log WHERE seq = 2"], 3, "missing"),
    (["UPDATE audit_log SET seq = 100 WHERE seq = 2", "UPDATE audit_log SET seq = 2 WHERE seq = 4",
      "UPDATE audit_log SET seq = 4 WHERE seq = 100"], 2, "does not follow"),  # two events swapped
    (["DELETE FROM audit_log WHERE seq = 5"], 5, "last 1 event(s) are missing"),
])
def test_verify_names_the_first_edited_deleted_or_moved_event(db: Engine, path: Path, five: list[str],
                                                              statements: list[str], bad: int, problem: str) -> None:
    assert verify(AuditLog(db)).intact
    doctored(path, *statements)
    verdict = verify(AuditLog(db))
    assert not verdict.intact and verdict.bad_seq == bad and problem in (verdict.problem or ""), verdict


def test_a_recomputed_hash_is_caught_at_the_next_event(db: Engine, path: Path, five: list[str]) -> None:
    from appliance.tenancy.audit import chain_hash, fields_of

    log = AuditLog(db)
    row = log.page(AuditFilter(), 1, cursor=4)[0][0]  # seq 3
    fields = {**fields_of(row), "actor_id": "usr_y"}
    forged = chain_hash(row.prev_hash, fields)
    doctored(path, f"UPDATE audit_log SET actor_id = 'usr_y', hash = '{forged}' WHERE seq = 3")
    verdict = verify(log)
    assert verdict.bad_seq == 4 and "does not follow" in (verdict.problem or "")


def test_the_application_cannot_change_or_remove_an_event(path: Path, five: list[str]) -> None:
    with sqlite3.connect(path) as connection:
        for statement in ("UPDATE audit_log SET status = 'FAILURE'", "DELETE FROM audit_log WHERE seq = 1"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                connection.execute(statement)


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    if why_unavailable() is not None:
        pytest.skip(str(why_unavailable()))
    with postgres_server() as url:
        yield url


def test_on_postgresql_two_writers_at_once_chain_and_the_log_is_append_only(postgres_url: str) -> None:
    engines = [open_database(postgres_url), open_database(postgres_url)]  # as two gateways would
    start = threading.Barrier(10)

    def writer(index: int) -> None:
        log = AuditLog(engines[index % 2])
        start.wait()
        for n in range(5):
            log.record(AuditEvent("test.write", actor_id=f"writer-{index}", details={"n": n}))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    verdict = verify(AuditLog(engines[0]))
    assert verdict.intact and verdict.checked == 50
    for statement in ("UPDATE audit_log SET status = 'FAILURE'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
        with pytest.raises(DBAPIError, match="append-only"), engines[0].begin() as connection:
            connection.execute(text(statement))
