"""Check a bundle: every file against the sha256 of MANIFEST.json, optionally its signature; optionally unpack it.

Standard library only (signatures import `cryptography` lazily): scripts/install runs this with
the box's python3 before any environment exists. Unpacking and checking are one pass over the
tar, so a file is never used unchecked: the installer moves nothing into place until this returns.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Callable
from pathlib import Path

from appliance.bundle.manifest import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    UNLISTED,
    BundleError,
    Manifest,
    hash_stream,
    human_size,
    safe_member_name,
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


def read_manifest(path: Path) -> tuple[Manifest, bytes, bytes | None]:
    """The manifest (parsed and raw) and the signature, without checking the other files."""
    tar, members = _open(path)
    with tar:
        by_name = {m.name: m for m in members}
        raw = _read_member(tar, by_name, MANIFEST_NAME)
        if raw is None:
            raise BundleError(f"{path}: {MANIFEST_NAME} is missing: the bundle is truncated or not a bundle")
        return Manifest.from_json(raw), raw, _read_member(tar, by_name, SIGNATURE_NAME)


def verify_bundle(path: Path, public_key: Path | None = None, destination: Destination | None = None,
                  compatible: Callable[[Manifest], str | None] | None = None,
                  progress: Progress | None = None) -> Manifest:
    """Check (and with ``destination`` unpack) the bundle; raise BundleError naming every bad file."""
    manifest, raw, signature = read_manifest(path)
    if public_key is not None:
        from appliance.bundle.signing import check_signature

        check_signature(raw, signature, public_key)
    if compatible is not None and (problem := compatible(manifest)) is not None:
        raise BundleError(f"{path}: {problem}")
    problems: list[str] = []
    seen: set[str] = set()
    tar, members = _open(path)
    with tar:
        for member in members:
            if member.name in UNLISTED or member.isdir():
                continue
            name = member.name
            expected = manifest.files.get(name)
            if expected is None or not member.isfile():
                problems.append(f"{name}: not listed in {MANIFEST_NAME} (added after the bundle was made)")
                continue
            seen.add(name)
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
