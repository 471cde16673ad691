"""Run a command under the unit's SystemCallFilter=, as systemd applies it, for the tests of what the engines need.

`python -m tests.support.syscall_filter UNIT -- CMD…` loads a seccomp filter (libseccomp, through ctypes) that
allows the system calls of the unit's SystemCallFilter= groups, expanded by `systemd-analyze syscall-filter`, and
execs CMD; every process CMD starts inherits it. Stricter than the unit: a call outside the list kills the process
(the unit answers EPERM), so a call an engine needs cannot go unnoticed.
"""

from __future__ import annotations

import ctypes
import functools
import os
import subprocess
import sys
from pathlib import Path

SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_ALLOW = 0x7FFF0000


@functools.cache
def expand(name: str) -> frozenset[str]:
    """The system calls of a group (``@system-service``, recursively) or of a single name."""
    if not name.startswith("@"):
        return frozenset({name})
    listing = subprocess.run(["systemd-analyze", "syscall-filter", "--no-pager", name], capture_output=True,
                             text=True, check=True).stdout
    names: set[str] = set()
    for line in listing.splitlines()[1:]:
        entry = line.strip()
        if entry and not entry.startswith("#"):
            names |= expand(entry)
    return frozenset(names)


def unit_allow_list(unit: Path) -> set[str]:
    """The system calls the unit's SystemCallFilter= lines allow (allow-list lines only; `~` lines deny)."""
    allowed: set[str] = set()
    for line in unit.read_text().splitlines():
        if line.startswith("SystemCallFilter="):
            value = line.split("=", 1)[1].strip()
            if value.startswith("~"):
                raise ValueError(f"{unit}: a deny-list SystemCallFilter= is not modelled here: {line}")
            for name in value.split():
                allowed |= expand(name)
    return allowed


def load_filter(allowed: set[str]) -> None:
    seccomp = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    seccomp.seccomp_init.restype = ctypes.c_void_p
    seccomp.seccomp_init.argtypes = [ctypes.c_uint32]
    seccomp.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    seccomp.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint]
    seccomp.seccomp_load.argtypes = [ctypes.c_void_p]
    context = seccomp.seccomp_init(SCMP_ACT_KILL_PROCESS)
    for name in sorted(allowed):
        number = seccomp.seccomp_syscall_resolve_name(name.encode())
        if number >= 0:  # names of other architectures resolve to nothing here
            if seccomp.seccomp_rule_add(context, SCMP_ACT_ALLOW, number, 0) != 0:
                raise OSError(f"seccomp_rule_add({name}) failed")
    if seccomp.seccomp_load(context) != 0:
        raise OSError("seccomp_load failed")


def main(argv: list[str]) -> None:
    unit, separator, *command = argv
    if separator != "--" or not command:
        sys.exit("usage: python -m tests.support.syscall_filter UNIT -- CMD...")
    load_filter(unit_allow_list(Path(unit)))
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
