"""The TLS directory: what the server reads (cert.pem, key.pem, ca.pem) and, apart, the box's CA.

    /etc/appliance/tls/cert.pem    the server certificate, then its intermediates (0644)
    /etc/appliance/tls/key.pem     its private key (0640, the directory's group: the service reads it)
    /etc/appliance/tls/ca.pem      the root clients trust, served at GET /ca.pem (0644)
    /etc/appliance/tls/ca/         the box's own CA: ca.pem and ca.key (0700, root's alone; the unit hides it)

Every file is written under a temporary name and renamed, so a reader sees the old file or the new one.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from appliance.tls.pem import PrivateKey

DEFAULT_DIR = Path("/etc/appliance/tls")
CERT, KEY, CA = "cert.pem", "key.pem", "ca.pem"
CA_SUBDIR, CA_KEY = "ca", "ca.key"
PREVIOUS = "previous"  # the certificate replaced last, kept for a manual roll-back


@dataclass(frozen=True)
class TlsPaths:
    directory: Path
    ca_directory: Path

    @classmethod
    def of(cls, directory: Path, ca_directory: Path | None = None) -> TlsPaths:
        return cls(directory, ca_directory or directory / CA_SUBDIR)

    @property
    def cert(self) -> Path:
        return self.directory / CERT

    @property
    def key(self) -> Path:
        return self.directory / KEY

    @property
    def ca(self) -> Path:
        return self.directory / CA

    @property
    def ca_cert(self) -> Path:
        return self.ca_directory / CA

    @property
    def ca_key(self) -> Path:
        return self.ca_directory / CA_KEY


def pem_of(*certificates: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def pem_of_key(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_dir(path: Path, mode: int) -> None:
    if not path.is_dir():
        path.mkdir(parents=True, mode=mode)
        path.chmod(mode)  # mkdir's mode passes through the umask


def write_file(path: Path, data: bytes, mode: int, group_of_dir: bool = False) -> None:
    """``data`` to ``path`` through a temporary file and one rename; ``mode`` is set before the first byte."""
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        if group_of_dir:  # key.pem: readable by the service through the directory's group
            with contextlib.suppress(PermissionError):
                os.fchown(fd, -1, path.parent.stat().st_gid)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def install(paths: TlsPaths, chain: list[x509.Certificate], key: PrivateKey, root: x509.Certificate | None) -> None:
    """Serve ``chain`` (leaf first) with ``key``; ``root`` becomes ca.pem (none: the old one goes).

    The files in service are copied to previous/ first. The key is written before the certificate: a reload
    that catches the two files between renames finds them mismatched and keeps the certificate it serves.
    """
    make_dir(paths.directory, 0o750)
    if paths.cert.exists() and paths.key.exists():
        previous = paths.directory / PREVIOUS
        make_dir(previous, 0o750)
        write_file(previous / KEY, paths.key.read_bytes(), 0o600)
        write_file(previous / CERT, paths.cert.read_bytes(), 0o644)
        if paths.ca.exists():
            write_file(previous / CA, paths.ca.read_bytes(), 0o644)
    write_file(paths.key, pem_of_key(key), 0o640, group_of_dir=True)
    write_file(paths.cert, pem_of(*chain), 0o644)
    if root is not None:
        write_file(paths.ca, pem_of(root), 0o644)
    else:
        paths.ca.unlink(missing_ok=True)


def others_may_read(path: Path) -> bool:
    """True when every user of the box may read ``path`` (mode o+r)."""
    return bool(stat.S_IMODE(path.stat().st_mode) & stat.S_IROTH)
