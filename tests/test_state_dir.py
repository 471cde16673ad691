"""The state directory and what is in it belong to the service user alone."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.cli.support import EXIT_NEEDS_OPERATOR
from appliance.config import load_settings
from appliance.db.database import open_database
from appliance.db.keys import KeyStore
from appliance.state_dir import (
    looseness_warning,
    make_private_dir,
    make_private_file,
    prepare_socket_dir,
    prepare_state_dir,
)


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


# --- the workers' socket directory -----------------------------------------------------------------------------

LONG = "a-state-directory-whose-path-is-too-long-for-a-unix-socket"


def long_state_dir(tmp_path: Path) -> Path:
    """A state dir whose sockets go to the system temp dir (its path is too long for AF_UNIX)."""
    state = tmp_path / LONG
    socket_dir = load_settings(None, state_dir=state).socket_dir
    assert socket_dir.parent == Path(tempfile.gettempdir())
    return state


def serve(state: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    catalogue = tmp_path / "models.toml"
    catalogue.write_text("")
    try:
        return subprocess.run([sys.executable, "-m", "appliance.cli", "serve", "--config", str(catalogue),
                               "--state-dir", str(state), "--port", "0"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired as exc:  # it served: it took the directory
        raise AssertionError("the appliance started with the socket directory it was given") from exc


@pytest.fixture
def foreign_socket_dir(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    state = long_state_dir(tmp_path)
    socket_dir = load_settings(None, state_dir=state).socket_dir
    shutil.rmtree(socket_dir, ignore_errors=True)
    yield state, socket_dir
    if socket_dir.is_symlink() or socket_dir.is_file():
        socket_dir.unlink()
    shutil.rmtree(socket_dir, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="making a directory another user owns needs root")
def test_a_socket_directory_another_user_made_first_is_refused(foreign_socket_dir: tuple[Path, Path],
                                                               tmp_path: Path) -> None:
    state, socket_dir = foreign_socket_dir
    socket_dir.mkdir(mode=0o700)
    os.chown(socket_dir, 65534, 65534)  # nobody: a local user who got there first
    result = serve(state, tmp_path)
    assert result.returncode == EXIT_NEEDS_OPERATOR  # the unit does not restart into it
    assert (f"refusing the worker socket directory {socket_dir}: it belongs to another user (uid 65534), and a "
            "worker's socket skips the API key check") in result.stderr
    assert "Traceback" not in result.stderr
    assert socket_dir.stat().st_uid == 65534  # refused, not repaired


@pytest.mark.parametrize("kind", ["loose", "link"])
def test_a_socket_directory_open_to_others_or_a_link_is_refused(foreign_socket_dir: tuple[Path, Path],
                                                                tmp_path: Path, kind: str) -> None:
    state, socket_dir = foreign_socket_dir
    if kind == "loose":
        socket_dir.mkdir()
        socket_dir.chmod(0o777)
        expected = "it has mode 0777, open to other users"
    else:
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        socket_dir.symlink_to(tmp_path / "elsewhere")
        expected = "it is not a directory but a link or a file"
    result = serve(state, tmp_path)
    assert result.returncode == EXIT_NEEDS_OPERATOR and expected in result.stderr, result.stderr


def test_a_new_socket_directory_is_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        prepare_socket_dir(tmp_path / "sockets")
        prepare_socket_dir(tmp_path / "sockets")  # again: it is ours
    finally:
        os.umask(old)
    assert mode(tmp_path / "sockets") == 0o700
