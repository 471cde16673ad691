"""scripts/install in a network namespace with no way out: a bundle goes into a root with pip --no-index,
again without change, upgrades keeping the state, rolls back; a bad bundle changes nothing."""

from __future__ import annotations

import hashlib
import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bundle.conftest import EMBED, with_flipped_byte
from tests.conftest import REPO
from tests.support.netns import needs_namespace, offline

pytestmark = needs_namespace


def install(*args: str | Path, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(offline([str(REPO / "scripts" / "install"), *map(str, args)]), capture_output=True,
                          text=True, timeout=900, env={**os.environ, **(env or {})}, cwd=cwd)


def installed(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed appliance's CLI, offline, against the root's state dir."""
    return subprocess.run(offline([str(root / "opt/appliance/current/.venv/bin/appliance"), *args]),
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "APPLIANCE_STATE_DIR": str(root / "var/lib/appliance")})


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` with its content's hash (files) or target (links)."""
    seen: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        name = str(path.relative_to(root))
        if path.is_symlink():
            seen[name] = "-> " + os.readlink(path)
        elif path.is_file():
            seen[name] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            seen[name] = "dir"
    return seen


@pytest.fixture(scope="module")
def root(gateway_bundle: Path, signing_key: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("root")
    result = install(gateway_bundle, "--root", root, "--pubkey", f"{signing_key}.pub")
    assert result.returncode == 0, result.stderr[-4000:]
    (root.parent / f"{root.name}-install.log").write_text(result.stderr)
    yield root


def install_log(root: Path) -> str:
    return (root.parent / f"{root.name}-install.log").read_text()


def test_the_bundle_installs_offline_into_a_versioned_directory(root: Path) -> None:
    current = root / "opt/appliance/current"
    assert current.is_symlink() and os.readlink(current).startswith("versions/0.1.0-")
    assert (current / ".complete").is_file() and (current / "MANIFEST.json").is_file()
    log = install_log(root)
    assert "signature ok (" in log and "files match SHA256SUMS" in log  # scripts/verify-bundle, first
    assert "bundle ok: version 0.1.0-" in log and "building .venv from the bundle's wheels (pip --no-index)" in log
    assert (root / "etc/systemd/system/appliance.service").read_text().startswith("# The inference appliance")
    # The unit denies every address but the LAN, in a drop-in the operator may edit; the install ran in a
    # namespace without one, so only localhost (tests/tls/test_lan.py installs with a LAN).
    lan = (root / "etc/systemd/system/appliance.service.d/10-lan.conf").read_text()
    assert "IPAddressAllow=localhost" in lan.splitlines()
    assert (root / "etc/appliance/bundle.pub").is_file()  # later bundles must be signed by the same key
    assert "not starting the service (--root" in log


def test_the_installed_appliance_runs_offline(root: Path) -> None:
    help_text = installed(root, "--help")
    assert help_text.returncode == 0 and "models" in help_text.stdout and "bundle" in help_text.stdout
    created = installed(root, "keys", "create", "ops")
    assert created.returncode == 0, created.stderr
    assert (root / "var/lib/appliance/appliance.db").is_file()


def test_the_models_and_the_catalogue_are_in_place(root: Path) -> None:
    catalogue = (root / "etc/appliance/models.toml").read_text()
    models = root / "var/lib/appliance/models"
    (model_dir,) = [p for p in models.iterdir() if not p.name.startswith(".")]
    assert (model_dir / "modules.json").is_file()
    assert f'path = "{model_dir}"' in catalogue
    check = installed(root, "models", "check", "--config", str(root / "etc/appliance/models.toml"))
    # the quick bundle carries no engines: the check finds the weights and says what is missing
    assert check.returncode == 1 and "does not exist" not in check.stdout
    assert f"BAD {EMBED}\n    - engine 'sentence-transformers' is not installed" in check.stdout
    assert "this bundle is partial; it left out:\n  - the engines' libraries" in install_log(root)


def test_pip_used_the_bundles_wheels_only(root: Path) -> None:
    site = next((root / "opt/appliance/current/.venv/lib").glob("python3.*/site-packages"))
    assert (site / "fastapi").is_dir() and (site / "cryptography").is_dir()
    assert not (site / "torch").exists()


def test_installing_the_same_bundle_again_changes_nothing(root: Path, gateway_bundle: Path) -> None:
    before = snapshot(root)
    result = install(gateway_bundle, "--root", root)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "is already installed; keeping it" in result.stderr and "is already this one" in result.stderr
    assert snapshot(root) == before


def test_a_tampered_bundle_is_refused_by_file_name_and_nothing_changes(root: Path, gateway_bundle: Path,
                                                                       tmp_path: Path) -> None:
    with tarfile.open(gateway_bundle) as tar:
        weights = next(m.name for m in tar.getmembers() if m.name.endswith(".safetensors"))
    tampered = with_flipped_byte(gateway_bundle, weights, tmp_path / "tampered.tar")
    before = snapshot(root)
    result = install(tampered, "--root", root)
    assert result.returncode == 1
    assert f"{weights}: sha256 mismatch" in result.stderr and "nothing was changed" in result.stderr
    assert snapshot(root) == before


def test_a_bundle_for_the_other_target_is_refused(root: Path, gateway_bundle: Path) -> None:
    before = snapshot(root)
    result = install(gateway_bundle, "--root", root, env={"APPLIANCE_TARGET": "cuda"})
    assert result.returncode == 1
    assert "this bundle is for CPU boxes and this box is a CUDA one" in result.stderr
    assert snapshot(root) == before


def test_an_unsigned_bundle_is_refused_once_a_key_is_configured(root: Path, unsigned_bundle: Path) -> None:
    before = snapshot(root)
    result = install(unsigned_bundle, "--root", root)
    assert result.returncode == 1 and "it is not signed (SHA256SUMS.sig is missing)" in result.stderr
    assert snapshot(root) == before


def test_a_first_install_needs_a_public_key(gateway_bundle: Path, tmp_path: Path) -> None:
    result = install(gateway_bundle, "--root", tmp_path / "root")
    assert result.returncode == 1 and "no public key to check the bundle's signature with" in result.stderr
    assert list((tmp_path / "root").iterdir()) == []


def test_a_first_install_of_a_truncated_bundle_names_the_file_and_leaves_nothing(gateway_bundle: Path,
                                                                                 signing_key: Path,
                                                                                 tmp_path: Path) -> None:
    with tarfile.open(gateway_bundle) as tar:
        cut_in = next(m for m in tar.getmembers() if m.name.endswith(".safetensors"))
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(gateway_bundle.read_bytes()[: cut_in.offset_data + 10])
    fresh = tmp_path / "root"
    result = install(truncated, "--root", fresh, "--pubkey", f"{signing_key}.pub")
    assert result.returncode == 1
    assert f"the bundle is truncated: {cut_in.name} ends early" in result.stderr
    assert list(fresh.iterdir()) == []


def test_an_upgrade_keeps_the_state_and_can_be_rolled_back(root: Path, newer_bundle: Path) -> None:
    old = os.readlink(root / "opt/appliance/current")
    keys_before = installed(root, "keys", "list").stdout
    assert " ops " in keys_before
    upgraded = install(newer_bundle, "--root", root)
    assert upgraded.returncode == 0, upgraded.stderr[-3000:]
    new = os.readlink(root / "opt/appliance/current")
    assert new != old and os.readlink(root / "opt/appliance/previous") == old
    assert installed(root, "keys", "list").stdout == keys_before  # the state dir is kept
    assert "port = 8181" not in (root / "etc/appliance/models.toml").read_text()  # the operator's catalogue stays

    rolled_back = install("--rollback", "--root", root)
    assert rolled_back.returncode == 0, rolled_back.stderr
    assert os.readlink(root / "opt/appliance/current") == old
    assert os.readlink(root / "opt/appliance/previous") == new
    assert installed(root, "keys", "list").stdout == keys_before


def test_a_disk_too_small_is_refused_and_left_as_it_was(gateway_bundle: Path, signing_key: Path,
                                                        tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    # a real 8 MB disk (tmpfs) in a mount namespace of its own; what is left on it is listed before it goes
    script = ('mount -t tmpfs -o size=8m tmpfs "$1" && ip link set lo up && "$3" "$2" --root "$1" --pubkey "$4"; '
              'status=$?; echo "left: [$(ls -A "$1")]"; exit $status')
    result = subprocess.run(["unshare", "-m", "-n", "sh", "-c", script, "sh", str(small), str(gateway_bundle),
                             str(REPO / "scripts" / "install"), f"{signing_key}.pub"], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    assert "not enough space on the disk of" in result.stderr and "nothing was changed" in result.stderr
    assert "left: []" in result.stdout


def test_a_rollback_without_a_previous_version_says_so(tmp_path: Path) -> None:
    result = install("--rollback", "--root", tmp_path)
    assert result.returncode == 1 and "no previous version in" in result.stderr
