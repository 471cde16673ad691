"""The names a client reaches the box by: its host names and LAN addresses, and whether a certificate covers them."""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import socket
import struct
from pathlib import Path

LOCAL_NAMES = ["localhost"]
LOCAL_ADDRESSES = ["127.0.0.1", "::1"]
_SIOCGIFADDR = 0x8915
_SIOCGIFNETMASK = 0x891B


def host_names() -> list[str]:
    """This box's host name and fully qualified name (when it has a different one), then localhost."""
    names = [socket.gethostname()]
    with contextlib.suppress(OSError):
        fqdn = socket.getfqdn()
        if fqdn and fqdn not in names and fqdn != "localhost" and "." in fqdn:
            names.append(fqdn)
    return [name for name in names if name and name != "localhost"] + LOCAL_NAMES


def lan_addresses() -> list[str]:
    """The box's addresses outside loopback and link-local: IPv4 per interface, global IPv6 from /proc."""
    found: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for _index, name in socket.if_nameindex():
            with contextlib.suppress(OSError):
                packed = fcntl.ioctl(probe.fileno(), _SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
                found.append(socket.inet_ntoa(packed[20:24]))
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/if_inet6").read_text().splitlines():
            hex_address, _index, _prefix, scope = line.split()[:4]
            if scope == "00":  # global scope
                found.append(str(ipaddress.IPv6Address(bytes.fromhex(hex_address))))
    usable = [a for a in found if not (ipaddress.ip_address(a).is_loopback or ipaddress.ip_address(a).is_link_local)]
    return list(dict.fromkeys(usable)) + LOCAL_ADDRESSES


def lan_networks() -> list[str]:
    """The networks of the box's own addresses outside loopback and link-local (``192.168.10.0/24``): the LAN
    the unit lets in by default (its IPAddressAllow=, written by scripts/install)."""
    found: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for _index, name in socket.if_nameindex():
            request = struct.pack("256s", name.encode()[:15])
            with contextlib.suppress(OSError):
                address = socket.inet_ntoa(fcntl.ioctl(probe.fileno(), _SIOCGIFADDR, request)[20:24])
                mask = socket.inet_ntoa(fcntl.ioctl(probe.fileno(), _SIOCGIFNETMASK, request)[20:24])
                found.append(ipaddress.IPv4Network(f"{address}/{mask}", strict=False))
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/if_inet6").read_text().splitlines():
            hex_address, _index, prefix, scope = line.split()[:4]
            if scope == "00":  # global scope
                address = ipaddress.IPv6Address(bytes.fromhex(hex_address))
                found.append(ipaddress.IPv6Network(f"{address}/{int(prefix, 16)}", strict=False))
    usable = [net for net in found if not (net.network_address.is_loopback or net.network_address.is_link_local)]
    return list(dict.fromkeys(str(net) for net in usable))


def split_names(names: list[str]) -> tuple[list[str], list[str]]:
    """Names given by a person, split into DNS names and IP addresses (normalised)."""
    dns, ips = [], []
    for name in names:
        try:
            ips.append(str(ipaddress.ip_address(name.strip("[]"))))
        except ValueError:
            dns.append(name.lower().rstrip("."))
    return dns, ips


def dns_name_matches(pattern: str, name: str) -> bool:
    """RFC 6125: a wildcard stands for exactly one leftmost label (``*.lan`` covers ``box.lan``, not ``a.b.lan``)."""
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = name.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == name


def uncovered(wanted_dns: list[str], wanted_ips: list[str], dns: list[str], ips: list[str]) -> list[str]:
    """The wanted names a certificate for ``dns`` and ``ips`` does not cover."""
    missing = [name for name in wanted_dns if not any(dns_name_matches(p, name) for p in dns)]
    have_ips = {ipaddress.ip_address(ip) for ip in ips}
    missing += [ip for ip in wanted_ips if ipaddress.ip_address(ip) not in have_ips]
    return missing


def https_base_url(names: list[str], port: int) -> str | None:
    """https://NAME[:PORT] for a certificate's first host name (not localhost, no wildcard), else its first
    address off loopback; None when it names neither."""
    dns, ips = split_names(names)
    name = next((n for n in dns if n not in LOCAL_NAMES and "*" not in n), None)
    if name is None:
        address = next((ipaddress.ip_address(a) for a in ips if not ipaddress.ip_address(a).is_loopback), None)
        if address is None:
            return None
        name = f"[{address}]" if address.version == 6 else str(address)
    return f"https://{name}" + ("" if port == 443 else f":{port}")
