"""Run commands in a network namespace of their own with loopback only: the box with no way out."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Sequence

import pytest


@functools.cache
def why_no_namespace() -> str | None:
    """None when `unshare -n` works here, else the reason a test that needs it is skipped."""
    if os.geteuid() != 0:
        return "needs root: a network namespace is made with `unshare -n`"
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs `unshare` (util-linux) and `ip` (iproute2)"
    result = subprocess.run(["unshare", "-n", "ip", "link", "set", "lo", "up"], capture_output=True, text=True)
    if result.returncode != 0:
        return f"`unshare -n` does not work here: {result.stderr.strip()}"
    return None


needs_namespace = pytest.mark.skipif(why_no_namespace() is not None, reason=why_no_namespace() or "")


def offline(command: Sequence[str]) -> list[str]:
    """``command`` run in a new network namespace whose only interface is loopback (up)."""
    return ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "offline", *command]
