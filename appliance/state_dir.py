"""The state directory's permissions: keys, usage and media are the service user's alone.

Everything the appliance writes there is created private (directories 0700,
files 0600, whatever the umask); an existing directory that others may read is
left as the administrator made it, with a warning at start (0750 with the
service's own group is accepted: that is a deliberate choice).
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import stat
import tempfile
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
# Bits that let someone other than the service user change the directory, or anyone outside its group read it.
LOOSE_BITS = stat.S_IWGRP | stat.S_IRWXO
RESTRICTIVE_UMASK = 0o077


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and its missing parents) readable by the owner only; an existing one keeps its mode."""
    if path.is_dir():
        return
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    with contextlib.suppress(PermissionError):
        path.chmod(PRIVATE_DIR_MODE)  # mkdir's mode is filtered through the umask; a race is harmless


def make_private_file(path: Path) -> None:
    """Make sure ``path`` exists and only its owner may read or write it (created 0600, tightened if looser)."""
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, PRIVATE_FILE_MODE)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
            os.fchmod(fd, PRIVATE_FILE_MODE)
    finally:
        os.close(fd)


def tighten_if_exists(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError, PermissionError):
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            path.chmod(PRIVATE_FILE_MODE)


def looseness_warning(path: Path) -> str | None:
    """A sentence for the log when others may read or change ``path``; None when it is private enough."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if not mode & LOOSE_BITS:
        return None
    return (f"the state directory {path} has mode {mode:04o}: other local users may read API key hashes, usage "
            f"and media, or change them; run 'chmod 700 {path}' (or 0750 with the service's own group)")


def prepare_state_dir(path: Path) -> list[str]:
    """Create the state directory private and make the process create private files; the warnings to log."""
    os.umask(os.umask(0) | RESTRICTIVE_UMASK)  # workers inherit it: their sockets and logs are private too
    make_private_dir(path)
    warning = looseness_warning(path)
    return [warning] if warning else []


def raise_open_files_limit() -> int:
    """Raise this process's open-files limit to its hard limit (workers inherit it): many clients and engine
    connections at once must not run a gateway out of descriptors. The new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            return hard
    return soft


def use_private_temp_dir(state_dir: Path) -> Path:
    """Make ``STATE/tmp`` this process's temporary directory (uploads spool there, not to a shared ``/tmp``),
    emptied of what a previous run left."""
    path = state_dir / "tmp"
    shutil.rmtree(path, ignore_errors=True)
    make_private_dir(path)
    tempfile.tempdir = str(path)
    return path


class UnsafeDirectory(ValueError):
    """A directory the appliance must not use; the message says why and what to do."""


def prepare_socket_dir(path: Path) -> None:
    """Create the workers' socket directory private, or refuse one that others could reach.

    A worker's socket skips the gateway's key check, so the directory is what keeps other local users
    out. When the state dir's path is long it lives in the system temp dir, where another user could have
    made it first (or put a link there): such a directory is refused, never used or repaired.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=PRIVATE_DIR_MODE)
    info = os.lstat(path)
    problem = None
    if not stat.S_ISDIR(info.st_mode):
        problem = "is not a directory but a link or a file"
    elif info.st_uid != os.geteuid():
        problem = f"belongs to another user (uid {info.st_uid})"
    elif stat.S_IMODE(info.st_mode) & 0o077:
        problem = f"has mode {stat.S_IMODE(info.st_mode):04o}, open to other users"
    if problem is not None:
        raise UnsafeDirectory(f"refusing the worker socket directory {path}: it {problem}, and a worker's socket "
                              f"skips the API key check; remove it (rm -r {path}) and start again")
