"""Engine logs: one private file per model, rotated once large, read from the end."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.supervisor import engine_logs
from appliance.supervisor.engine_logs import engine_log, log_name, log_path, set_directory, tail


@pytest.fixture
def directory(tmp_path: Path) -> Iterator[Path]:
    set_directory(tmp_path / "logs")
    yield tmp_path / "logs"
    set_directory(None)


def test_a_slug_becomes_a_plain_file_name() -> None:
    assert log_name("openai/tts-1") == "openai--tts-1.log"
    assert log_name("../../etc/passwd") == "--..--etc--passwd.log"
    assert "/" not in log_name("a/b/c d")


def test_without_a_directory_the_engine_inherits_the_console() -> None:
    set_directory(None)
    assert engine_log("m") is None


def test_the_log_is_private_appended_and_one_handle_per_model(directory: Path) -> None:
    first = engine_log("org/m")
    assert first is not None
    first.write(b"first run\n")
    first.flush()
    second = engine_log("org/m")
    assert first.closed and second is not None and not second.closed
    second.write(b"second run\n")
    second.flush()
    path = log_path(directory, "org/m")
    assert path.read_text() == "first run\nsecond run\n"
    assert path.stat().st_mode & 0o777 == 0o600 and directory.stat().st_mode & 0o777 == 0o700


def test_a_large_log_is_rotated_at_the_next_start(directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_logs, "ROTATE_BYTES", 10)
    handle = engine_log("m")
    assert handle is not None
    handle.write(b"x" * 11)
    handle.flush()
    engine_log("m")
    assert (directory / "m.log.1").read_bytes() == b"x" * 11 and (directory / "m.log").read_bytes() == b""


def test_tail_reads_the_last_lines(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    path.write_text("".join(f"line {i}\n" for i in range(50_000)))
    assert tail(path, 3) == ["line 49997", "line 49998", "line 49999"]
    assert tail(path, 0) == []
    assert len(tail(path, 100_000)) == 50_000


def test_under_systemd_the_lines_also_go_to_the_journal_tagged_with_the_model(
        directory: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A fake journald: the real one cannot run in a test; this one only records its stream socket's bytes.
    address = tmp_path / "journal.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(address))
    server.listen(1)
    monkeypatch.setattr(engine_logs, "JOURNAL_SOCKET", str(address))
    monkeypatch.setenv("JOURNAL_STREAM", "8:1234")
    handle = engine_log("openai/tts-1")
    assert handle is not None
    handle.write(b"loading voice\nready\n")
    handle.close()  # the engine's end of the pipe closes: the copy ends
    connection, _ = server.accept()
    received = b""
    connection.settimeout(30)
    while chunk := connection.recv(65536):
        received += chunk
    connection.close()
    server.close()
    assert received == b"appliance/openai/tts-1\n\n6\n0\n0\n0\n0\nloading voice\nready\n"
    assert log_path(directory, "openai/tts-1").read_bytes() == b"loading voice\nready\n"


def test_without_a_reachable_journal_the_file_still_gets_everything(
        directory: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_logs, "JOURNAL_SOCKET", str(tmp_path / "no-such.sock"))
    monkeypatch.setenv("JOURNAL_STREAM", "8:1234")
    handle = engine_log("m")
    assert handle is not None
    handle.write(b"line\n")
    handle.flush()
    assert log_path(directory, "m").read_bytes() == b"line\n"
