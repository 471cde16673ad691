"""The state directory and what is in it belong to the service user alone."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from appliance.db.database import open_database
from appliance.db.keys import KeyStore
from appliance.state_dir import looseness_warning, make_private_dir, make_private_file, prepare_state_dir


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_state_dir_and_its_parents_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        make_private_dir(tmp_path / "a" / "state")
    finally:
        os.umask(old)
    assert mode(tmp_path / "a" / "state") == 0o700


def test_a_file_is_created_private_and_a_loose_one_is_tightened(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        make_private_file(tmp_path / "new.db")
        loose = tmp_path / "old.db"
        loose.write_bytes(b"x")
        loose.chmod(0o644)
        make_private_file(loose)
    finally:
        os.umask(old)
    assert mode(tmp_path / "new.db") == 0o600 and mode(loose) == 0o600 and loose.read_bytes() == b"x"


def test_the_db_and_its_wal_and_shm_are_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        engine = open_database(f"sqlite:///{tmp_path / 'state' / 'appliance.db'}")
        store = KeyStore(engine)
        store.create("someone")
        with engine.connect():  # an open connection keeps the WAL and the shared-memory file in place
            files = sorted((tmp_path / "state").iterdir())
            assert {f.name for f in files} >= {"appliance.db", "appliance.db-wal", "appliance.db-shm"}
            assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
    finally:
        os.umask(old)
    assert mode(tmp_path / "state") == 0o700


def test_a_loose_existing_state_dir_is_warned_about_not_changed(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    for loose in (0o755, 0o775, 0o777, 0o701):
        state.chmod(loose)
        old = os.umask(0o022)
        try:
            warnings = prepare_state_dir(state)
        finally:
            os.umask(old)
        assert len(warnings) == 1 and f"{loose:04o}" in warnings[0] and "chmod 700" in warnings[0]
        assert mode(state) == loose
    for private in (0o700, 0o750):
        state.chmod(private)
        assert looseness_warning(state) is None


def test_preparing_the_state_dir_makes_the_process_create_private_files(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        prepare_state_dir(tmp_path / "state")
        (tmp_path / "state" / "anything").write_text("x")
        assert mode(tmp_path / "state" / "anything") == 0o600
    finally:
        os.umask(old)
