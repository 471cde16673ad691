"""A throwaway PostgreSQL server from the Debian package, on a loopback port, for the shared-state tests."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.support.appliance import free_port

SERVICE_USER = "postgres"  # the Debian package's; initdb refuses to run as root


def server_binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def why_unavailable() -> str | None:
    if server_binaries() is None:
        return "PostgreSQL's server is not installed (scripts/test installs Debian's postgresql as root)"
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        return f"no '{SERVICE_USER}' user to run the server as"
    if os.geteuid() != 0:
        return "starting a PostgreSQL server as its own user needs root"
    return None


def _as_service_user() -> None:
    user = pwd.getpwnam(SERVICE_USER)
    os.setgid(user.pw_gid)
    os.setuid(user.pw_uid)


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server in a temporary directory; yields a SQLAlchemy URL of an empty database on it."""
    binaries = server_binaries()
    assert binaries is not None
    # Not under pytest's tmp_path: its root-only parents would keep the server's user out.
    workdir = Path(tempfile.mkdtemp(prefix="appliance-postgres-"))
    data, sockets = workdir / "data", workdir / "sockets"
    sockets.mkdir()
    for folder in (workdir, sockets):
        shutil.chown(folder, SERVICE_USER)
    port = free_port()
    run = {"check": True, "capture_output": True, "preexec_fn": _as_service_user, "timeout": 120}
    subprocess.run([str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "appliance", "--no-sync"], **run)
    subprocess.run([str(binaries / "pg_ctl"), "-D", str(data), "-w", "-l", str(workdir / "server.log"),
                    "-o", f"-h 127.0.0.1 -p {port} -k {sockets} -F", "start"], **run)
    try:
        subprocess.run([str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "appliance",
                        "appliance"], **run)
        yield f"postgresql+psycopg://appliance@127.0.0.1:{port}/appliance"
    finally:
        subprocess.run([str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, preexec_fn=_as_service_user, timeout=60)
        shutil.rmtree(workdir, ignore_errors=True)
