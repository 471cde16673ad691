"""Check a bundle: every file against the sha256 of MANIFEST.json, optionally its signature; optionally unpack it.

Standard library only (signatures import `cryptography` lazily): scripts/install runs this with
the box's python3 before any environment exists, from the appliance wheel that scripts/verify-bundle
checked, with the manifest pinned to the one whose signature it checked. Unpacking and checking are one
pass over the tar, so a file is never used unchecked: the installer moves nothing into place until this
returns.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from appliance.bundle.manifest import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    SUMS_NAME,
    SUMS_SIGNATURE_NAME,
    UNLISTED,
    BundleError,
    Manifest,
    hash_stream,
    human_size,
    safe_member_name,
    sha256sums,
)

Progress = Callable[[str], None]
Destination = Callable[[str], Path | None]  # bundle path → where to unpack it, or None to only check it
MAX_LISTED_PROBLEMS = 10


def _open(path: Path) -> tuple[tarfile.TarFile, list[tarfile.TarInfo]]:
    """The tar and its members; a truncated bundle is reported with the file that ends early."""
    try:
        tar = tarfile.open(path, mode="r:")
    except FileNotFoundError:
        raise BundleError(f"{path}: no such file") from None
    except tarfile.TarError as exc:
        raise BundleError(f"{path}: not a bundle (not a readable tar: {exc})") from None
    try:
        members = tar.getmembers()
    except tarfile.TarError:
        last = tar.members[-1].name if tar.members else "its first file"
        tar.close()
        raise BundleError(f"{path}: the bundle is truncated: {last} ends early (copy it again)") from None
    return tar, members


def _read_member(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str) -> bytes | None:
    member = members.get(name)
    if member is None:
        return None
    stream = tar.extractfile(member)
    return stream.read() if stream is not None else None


@dataclass(frozen=True)
class Head:
    """What a bundle says of itself: the manifest, the list of sums, and their signatures."""

    manifest: Manifest
    raw: bytes
    signature: bytes | None
    sums: bytes | None  # SHA256SUMS; bundles made before it existed have none
    sums_signature: bytes | None


def read_head(path: Path) -> Head:
    """The manifest (parsed and raw), SHA256SUMS and the signatures, without checking the other files."""
    tar, members = _open(path)
    with tar:
        by_name = {m.name: m for m in members}
        raw = _read_member(tar, by_name, MANIFEST_NAME)
        if raw is None:
            raise BundleError(f"{path}: {MANIFEST_NAME} is missing: the bundle is truncated or not a bundle")
        return Head(Manifest.from_json(raw), raw, _read_member(tar, by_name, SIGNATURE_NAME),
                    _read_member(tar, by_name, SUMS_NAME), _read_member(tar, by_name, SUMS_SIGNATURE_NAME))


def _check_sums(path: Path, head: Head) -> None:
    """SHA256SUMS must say what the manifest says, so that both verifiers check the same bundle."""
    assert head.sums is not None
    try:
        expected = sha256sums(head.manifest.files, head.raw)
    except BundleError as exc:
        raise BundleError(f"{path}: {exc}") from None
    if head.sums != expected:
        raise BundleError(f"{path}: {SUMS_NAME} does not list the files and hashes of {MANIFEST_NAME}: "
                          "one of them was changed after the bundle was made")


def verify_bundle(path: Path, public_key: Path | None = None, destination: Destination | None = None,
                  compatible: Callable[[Manifest], str | None] | None = None,
                  progress: Progress | None = None, manifest_sha256: str | None = None) -> Manifest:
    """Check (and with ``destination`` unpack) the bundle; raise BundleError naming every bad file.

    ``manifest_sha256`` pins the manifest to the one scripts/verify-bundle checked the signature of: the
    files unpacked are then those it checked, even if the bundle changed since.
    """
    head = read_head(path)
    manifest = head.manifest
    if manifest_sha256 is not None and hashlib.sha256(head.raw).hexdigest() != manifest_sha256:
        raise BundleError(f"{path}: {MANIFEST_NAME} is not the one whose signature was checked: the bundle "
                          "changed during the install")
    if public_key is not None:
        from appliance.bundle.signing import check_signature

        check_signature(head.raw, head.signature, public_key, SIGNATURE_NAME, MANIFEST_NAME)
        if head.sums is not None:
            check_signature(head.sums, head.sums_signature, public_key, SUMS_SIGNATURE_NAME, SUMS_NAME)
    if head.sums is not None:
        _check_sums(path, head)
    if compatible is not None and (problem := compatible(manifest)) is not None:
        raise BundleError(f"{path}: {problem}")
    problems: list[str] = []
    seen: set[str] = set()
    tar, members = _open(path)
    with tar:
        for member in members:
            name = member.name
            if name in seen:
                problems.append(f"{name}: in the bundle twice (added after the bundle was made)")
                continue
            seen.add(name)
            if name in UNLISTED or member.isdir():
                continue
            expected = manifest.files.get(name)
            if expected is None or not member.isfile():
                problems.append(f"{name}: not listed in {MANIFEST_NAME} (added after the bundle was made)")
                continue
            safe_member_name(name)
            target = destination(name) if destination is not None else None
            digest, size = _check_member(tar, member, target)
            if size != expected.size:
                problems.append(f"{name}: {size} bytes, the manifest says {expected.size} (truncated?)")
            elif digest != expected.sha256:
                problems.append(f"{name}: sha256 mismatch: the file was changed after the bundle was made")
            elif progress is not None:
                progress(f"ok {name} ({human_size(size)})")
    missing = sorted(set(manifest.files) - seen)
    problems += [f"{name}: missing from the bundle (truncated?)" for name in missing]
    if problems:
        shown = problems[:MAX_LISTED_PROBLEMS]
        more = f"\n  … and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
        raise BundleError(f"{path}: {len(problems)} bad file(s):\n  " + "\n  ".join(shown) + more)
    return manifest


def _check_member(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path | None) -> tuple[str, int]:
    stream = tar.extractfile(member)
    assert stream is not None  # a regular file
    if target is None:
        return hash_stream(stream)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as sink:
        result = hash_stream(stream, sink)
    os.chmod(target, 0o755 if member.mode & 0o100 else 0o644)
    return result
