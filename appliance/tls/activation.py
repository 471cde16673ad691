"""Listening sockets handed over by systemd (appliance.socket): the service binds 443 and 80 without privilege.

sd_listen_fds(3): the sockets are file descriptors 3… of this process, named by
the socket unit's FileDescriptorName= in $LISTEN_FDNAMES.
"""

from __future__ import annotations

import os
import socket

FIRST_FD = 3
HTTPS, HTTP = "https", "http"  # the FileDescriptorName= of each ListenStream= in systemd/appliance.socket


def systemd_sockets() -> dict[str, socket.socket]:
    """The sockets systemd passed to this process, by name; none when it was not socket-activated.

    The variables are removed afterwards and the descriptors are not inherited: the engine workers this
    process starts must not take themselves for socket-activated.
    """
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return {}
    count = int(os.environ.get("LISTEN_FDS", "0") or 0)
    names = os.environ.get("LISTEN_FDNAMES", "").split(":")
    sockets = {}
    for index in range(count):
        fd = FIRST_FD + index
        os.set_inheritable(fd, False)
        sockets[names[index] if index < len(names) and names[index] else f"fd{fd}"] = socket.socket(fileno=fd)
    for variable in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(variable, None)
    return sockets


def listening_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A TCP socket bound and listening on ``host``:``port`` (IPv6 when the host is an IPv6 address)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError:
        sock.close()
        raise
    sock.listen(backlog)
    return sock
