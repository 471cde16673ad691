"""A LAN of two network namespaces joined by a veth pair: the box (with its LAN address) and a client.

Nothing leaves them: the namespaces have no route out, and their addresses are TEST-NET-2 (198.51.100.0/24),
reserved for documentation and reachable only here. ``ip netns exec`` bind-mounts /etc/netns/NAME/hosts over
/etc/hosts, so the client resolves the box's host name as a LAN's DNS would.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

BOX_ADDRESS = "198.51.100.5"
CLIENT_ADDRESS = "198.51.100.7"


@dataclass
class Lan:
    box: str  # namespace names
    client: str
    box_name: str  # the host name clients use for the box (this machine's, as the box keeps it)

    def in_box(self, command: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.box, *command]

    def in_client(self, command: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.client, *command]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@contextlib.contextmanager
def lan() -> Iterator[Lan]:
    suffix = f"{os.getpid()}"
    box, client = f"appliance-box-{suffix}", f"appliance-lan-{suffix}"
    box_name = socket.gethostname()
    hosts_dirs = [Path("/etc/netns") / name for name in (box, client)]
    try:
        for name in (box, client):
            _ip("netns", "add", name)
            _ip("-n", name, "link", "set", "lo", "up")
        _ip("link", "add", f"vb{suffix}"[:15], "netns", box, "type", "veth", "peer", "name", f"vc{suffix}"[:15],
            "netns", client)
        for name, device, address in ((box, f"vb{suffix}"[:15], BOX_ADDRESS),
                                      (client, f"vc{suffix}"[:15], CLIENT_ADDRESS)):
            _ip("-n", name, "addr", "add", f"{address}/24", "dev", device)
            _ip("-n", name, "link", "set", device, "up")
        for directory in hosts_dirs:
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "hosts").write_text(f"127.0.0.1 localhost\n::1 localhost\n{BOX_ADDRESS} {box_name}\n")
        yield Lan(box, client, box_name)
    finally:
        for name in (box, client):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        for directory in hosts_dirs:
            shutil.rmtree(directory, ignore_errors=True)
