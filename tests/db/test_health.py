"""A state DB that cannot be used: start-up stops with one sentence that says how to restore it (no traceback, and an
exit status systemd does not restart on), and /ready says 503 naming the DB."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx

from appliance.cli.support import EXIT_NEEDS_OPERATOR
from appliance.db.database import open_database
from appliance.db.health import database_problem
from appliance.db.keys import KeyStore
from tests.support.appliance import start_appliance


def damage(db: Path) -> None:
    """Garbage over the SQLite header, as a bad disk or a stray write leaves it (once the WAL is written back, so
    that no copy of the first page in the WAL hides it)."""
    with sqlite3.connect(db) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    with db.open("r+b") as file:
        file.write(b"this is not an SQLite header!!!")


def db_with_a_key(db: Path) -> None:
    engine = open_database(f"sqlite:///{db}")
    KeyStore(engine).create("ops")
    engine.dispose()


def serve(config: Path, state: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "appliance.cli", "serve", "--config", str(config), "--state-dir",
                           str(state), "--port", "0"], capture_output=True, text=True, timeout=60)


def test_a_damaged_db_stops_the_start_with_one_sentence(tmp_path: Path) -> None:
    state = tmp_path / "state"
    db_with_a_key(state / "appliance.db")
    damage(state / "appliance.db")
    (tmp_path / "models.toml").write_text("")
    result = serve(tmp_path / "models.toml", state)
    assert result.returncode == EXIT_NEEDS_OPERATOR  # systemd: RestartPreventExitStatus, no restart loop
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: the state DB {state / 'appliance.db'} is damaged (file is not a database): with the "
                      "appliance stopped, restore the file from a backup (or move it aside to start with an empty "
                      "one: API keys, usage and batches are then lost), then start it"]


def test_the_cli_says_the_same_sentence(tmp_path: Path) -> None:
    db_with_a_key(tmp_path / "appliance.db")
    damage(tmp_path / "appliance.db")
    result = subprocess.run([sys.executable, "-m", "appliance.cli", "keys", "list", "--state-dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == EXIT_NEEDS_OPERATOR and "Traceback" not in result.stderr
    assert "is damaged (file is not a database)" in result.stderr


def test_a_healthy_db_has_no_problem_and_a_damaged_one_is_named(tmp_path: Path) -> None:
    engine = open_database(f"sqlite:///{tmp_path / 'appliance.db'}")
    assert database_problem(engine) is None
    engine.dispose()
    damage(tmp_path / "appliance.db")
    problem = database_problem(engine)
    assert problem is not None and problem.lasting
    assert problem.message.startswith(f"the state DB {tmp_path / 'appliance.db'} is damaged")


def test_ready_and_keyed_requests_are_503_naming_the_db_once_it_is_damaged(tmp_path: Path) -> None:
    (tmp_path / "models.toml").write_text("")
    with start_appliance(tmp_path / "models.toml", tmp_path / "state") as running:
        assert httpx.get(f"{running.url}/ready").status_code == 200
        key = running.create_key()
        damage(tmp_path / "state" / "appliance.db")
        keyed = httpx.get(f"{running.url}/v1/models", headers={"Authorization": f"Bearer {key}"})
        assert keyed.status_code == 503 and keyed.json()["error"]["code"] == "MODEL_UNAVAILABLE", keyed.text
        assert "is damaged (file is not a database)" in keyed.json()["error"]["message"]
        ready = httpx.get(f"{running.url}/ready")
        assert ready.status_code == 503
        body = ready.json()
        assert body["status"] == "unavailable"
        assert body["database"].startswith(f"the state DB {tmp_path / 'state' / 'appliance.db'} is damaged")
