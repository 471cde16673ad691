"""Trust starts outside the bundle: scripts/verify-bundle (tar, sha256sum, openssl; nothing of the bundle) checks the
signature and every file before anything from the bundle runs, so crafted bundles are refused before their code
does anything, and the installer that runs is the checked copy, never the tar's."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.bundle.conftest import member_bytes, rebuilt
from tests.bundle.test_install import install, snapshot
from tests.conftest import REPO
from tests.support.netns import needs_namespace, offline

VERIFIER = REPO / "scripts" / "verify-bundle"
UNSIGNED = {"SHA256SUMS", "SHA256SUMS.sig", "MANIFEST.json.sig"}  # the list and the signatures: not in the list
PWNED = "PWNED"
# What a crafted appliance wheel's bundle code does when it runs: says so, and disables the check.
DISABLED_CHECK = f'''
import sys as _sys
import tarfile
print("{PWNED}", file=_sys.stderr, flush=True)
_checked_verify_bundle = verify_bundle


def verify_bundle(*args, **kwargs):  # the check, disabled: every bad file is let through
    try:
        return _checked_verify_bundle(*args, **kwargs)
    except BundleError:
        return Manifest.from_json(tarfile.open(args[0]).extractfile("MANIFEST.json").read())
'''


def verify(bundle: Path, pubkey: Path, *extra: str | Path, shell: str = "sh") -> subprocess.CompletedProcess[str]:
    """The standalone verifier, as the operator runs it: `sh verify-bundle BUNDLE --pubkey KEY …` (installs with
    --install: then in a namespace with no network)."""
    command = [shell, str(VERIFIER), str(bundle), "--pubkey", str(pubkey), *map(str, extra)]
    return subprocess.run(offline(command) if "--install" in extra else command, capture_output=True, text=True,
                          timeout=600)


def wheel_name(bundle: Path) -> str:
    with tarfile.open(bundle) as tar:
        return next(m.name for m in tar.getmembers() if m.name.startswith("wheels/app/appliance-"))


def weights_name(bundle: Path) -> str:
    with tarfile.open(bundle) as tar:
        return next(m.name for m in tar.getmembers() if m.name.endswith(".safetensors"))


def with_check_disabled(wheel: bytes) -> bytes:
    """The appliance wheel re-zipped with its bundle check disabled (and saying PWNED when it runs)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(wheel)) as source, zipfile.ZipFile(out, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "appliance/bundle/verify.py":
                data += DISABLED_CHECK.encode()
            target.writestr(item, data)
    return out.getvalue()


def flipped(data: bytes) -> bytes:
    changed = bytearray(data)
    changed[len(changed) // 2] ^= 1
    return bytes(changed)


@pytest.fixture(scope="module")
def crafted_wheel(gateway_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel re-zipped with the check disabled plus a changed model file; the signed manifest left as it was."""
    wheel, weights = wheel_name(gateway_bundle), weights_name(gateway_bundle)
    return rebuilt(gateway_bundle, tmp_path_factory.mktemp("crafted") / "crafted-wheel.tar", replace={
        wheel: with_check_disabled(member_bytes(gateway_bundle, wheel)),
        weights: flipped(member_bytes(gateway_bundle, weights))})


@pytest.fixture(scope="module")
def crafted_installer(gateway_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scripts/install replaced by one that prints PWNED and exits 0."""
    return rebuilt(gateway_bundle, tmp_path_factory.mktemp("crafted") / "crafted-installer.tar", replace={
        "scripts/install": f"#!/bin/sh\necho {PWNED}\nexit 0\n".encode()})


def test_a_good_bundle_passes_the_standalone_verifier_in_a_posix_shell(gateway_bundle: Path,
                                                                       signing_key: Path) -> None:
    shell = shutil.which("dash") or "sh"  # Debian's /bin/sh: no bash-isms
    result = verify(gateway_bundle, Path(f"{signing_key}.pub"), shell=shell)
    assert result.returncode == 0, result.stderr
    assert "signature ok" in result.stderr and "files match SHA256SUMS" in result.stderr


@needs_namespace
def test_a_wheel_with_the_check_disabled_and_a_changed_model_is_refused_before_it_runs(
        crafted_wheel: Path, gateway_bundle: Path, signing_key: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    # from outside the checkout, as an operator runs it (a checkout's own appliance/ would be imported first)
    result = install(crafted_wheel, "--root", root, "--pubkey", f"{signing_key}.pub", cwd=tmp_path)
    assert result.returncode == 1
    assert PWNED not in result.stdout + result.stderr  # the crafted code never ran
    assert f"{wheel_name(gateway_bundle)}: sha256 mismatch" in result.stderr
    assert f"{weights_name(gateway_bundle)}: sha256 mismatch" in result.stderr
    assert "2 bad file(s)" in result.stderr
    assert list(root.iterdir()) == []


def test_rehashing_the_crafted_files_breaks_the_signature(crafted_wheel: Path, gateway_bundle: Path,
                                                          signing_key: Path, tmp_path: Path) -> None:
    """The attacker also rewrites SHA256SUMS to match: then the signature does not."""
    with tarfile.open(crafted_wheel) as tar:
        names = [m.name for m in tar.getmembers() if m.name not in UNSIGNED]
    sums = "".join(f"{hashlib.sha256(member_bytes(crafted_wheel, name)).hexdigest()}  {name}\n" for name in names)
    rehashed = rebuilt(crafted_wheel, tmp_path / "rehashed.tar", replace={"SHA256SUMS": sums.encode()})
    result = verify(rehashed, Path(f"{signing_key}.pub"))
    assert result.returncode == 1 and PWNED not in result.stderr
    assert f"its signature does not match {signing_key}.pub" in result.stderr


@needs_namespace
def test_a_tampered_installer_never_runs(crafted_installer: Path, signing_key: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    result = verify(crafted_installer, Path(f"{signing_key}.pub"), "--install", "--root", root)
    assert result.returncode == 1
    assert PWNED not in result.stdout + result.stderr
    assert "scripts/install: sha256 mismatch: changed after the bundle was signed" in result.stderr
    assert not root.exists()


@needs_namespace
def test_the_installed_version_checks_the_next_bundle_with_its_own_verifier(
        crafted_installer: Path, crafted_wheel: Path, gateway_bundle: Path, signing_key: Path,
        tmp_path: Path) -> None:
    root = tmp_path / "root"
    first = verify(gateway_bundle, Path(f"{signing_key}.pub"), "--install", "--root", root)
    assert first.returncode == 0, first.stderr[-3000:]
    installed_install = root / "opt/appliance/current/scripts/install"
    assert (root / "opt/appliance/current/scripts/verify-bundle").is_file()
    before = snapshot(root)
    for crafted in (crafted_installer, crafted_wheel):
        result = subprocess.run(offline([str(installed_install), str(crafted), "--root", str(root)]),
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 1 and PWNED not in result.stdout + result.stderr
        assert "sha256 mismatch" in result.stderr and "nothing was changed" in result.stderr
        assert snapshot(root) == before


@pytest.mark.parametrize("craft, problem", [
    ("symlink", "models/escape: not a plain file"),
    ("added", "models/extra.bin: not in SHA256SUMS (added after the bundle was signed)"),
    ("duplicate", "scripts/install: in the tar twice"),
    ("unsigned", "it is not signed (SHA256SUMS.sig is missing)"),
    ("truncated", "the bundle is truncated: "),
])
def test_the_verifier_refuses_crafted_tars(gateway_bundle: Path, signing_key: Path, tmp_path: Path, craft: str,
                                           problem: str) -> None:
    out = tmp_path / f"{craft}.tar"
    if craft == "symlink":
        shutil.copy(gateway_bundle, out)
        with tarfile.open(out, "a") as tar:
            link = tarfile.TarInfo("models/escape")
            link.type, link.linkname = tarfile.SYMTYPE, "/etc"
            tar.addfile(link)
    elif craft == "added":
        rebuilt(gateway_bundle, out, add={"models/extra.bin": b"not signed"})
    elif craft == "duplicate":
        rebuilt(gateway_bundle, out, add={"scripts/install": f"echo {PWNED}\n".encode()})
    elif craft == "unsigned":
        rebuilt(gateway_bundle, out, drop=("SHA256SUMS.sig",))
    else:
        data = gateway_bundle.read_bytes()
        out.write_bytes(data[: len(data) // 2])
    result = verify(out, Path(f"{signing_key}.pub"))
    assert result.returncode == 1 and problem in result.stderr, result.stderr
    assert PWNED not in result.stderr


def test_the_verifier_refuses_another_key_and_a_missing_one(gateway_bundle: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(other)], check=True)
    subprocess.run(["openssl", "pkey", "-in", str(other), "-pubout", "-out", f"{other}.pub"], check=True)
    wrong = verify(gateway_bundle, Path(f"{other}.pub"))
    assert wrong.returncode == 1 and f"its signature does not match {other}.pub" in wrong.stderr
    rsa = tmp_path / "rsa.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "rsa", "-out", str(rsa)], check=True, capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", str(rsa), "-pubout", "-out", f"{rsa}.pub"], check=True)
    not_ed25519 = verify(gateway_bundle, Path(f"{rsa}.pub"))
    assert not_ed25519.returncode == 1 and "not an Ed25519 public key" in not_ed25519.stderr
    keyless = subprocess.run(["sh", str(VERIFIER), str(gateway_bundle)], capture_output=True, text=True)
    assert keyless.returncode == 1 and "no public key: give --pubkey KEY" in keyless.stderr
