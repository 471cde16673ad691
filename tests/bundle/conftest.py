"""Bundles made once per session: the gateway's own wheels only (no engines, no vLLM), to keep CI quick."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.conftest import catalogue_subset

EMBED = "openai/text-embedding-3-small"


def appliance(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def make_bundle(out: Path, catalogue: Path, *options: str) -> Path:
    result = appliance("bundle", "create", str(out), "--config", str(catalogue), "--no-engines", "--no-vllm",
                       *options)
    assert result.returncode == 0, result.stderr[-3000:]
    out.with_suffix(".log").write_text(result.stderr)  # its progress, for the tests to read
    return out


def with_flipped_byte(bundle: Path, member_name: str, out: Path) -> Path:
    """A copy of ``bundle`` with one byte of ``member_name``'s content changed."""
    with tarfile.open(bundle) as tar:
        member = tar.getmember(member_name)
    data = bytearray(bundle.read_bytes())
    data[member.offset_data + member.size // 2] ^= 0x01
    out.write_bytes(bytes(data))
    return out


def rebuilt(bundle: Path, out: Path, replace: dict[str, bytes] | None = None, drop: tuple[str, ...] = (),
            add: dict[str, bytes] | None = None) -> Path:
    """A copy of ``bundle`` with some members' contents replaced (sizes may change), some dropped, some added."""
    replace = replace or {}
    with tarfile.open(bundle) as source, tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as target:
        for member in source.getmembers():
            if member.name in drop:
                continue
            data = replace.get(member.name)
            if data is None:
                data = source.extractfile(member).read()  # type: ignore[union-attr]
            member.size = len(data)
            target.addfile(member, io.BytesIO(data))
        for name, data in (add or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            target.addfile(info, io.BytesIO(data))
    return out


def member_bytes(bundle: Path, name: str) -> bytes:
    with tarfile.open(bundle) as tar:
        return tar.extractfile(name).read()  # type: ignore[union-attr]


@pytest.fixture(scope="session")
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    key = tmp_path_factory.mktemp("keys") / "bundle.key"
    result = appliance("bundle", "keygen", str(key))
    assert result.returncode == 0, result.stderr
    return key


@pytest.fixture(scope="session")
def bundle_catalogue(tiny_catalogue: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return catalogue_subset(tiny_catalogue, [EMBED], tmp_path_factory.mktemp("catalogue") / "models.toml")


@pytest.fixture(scope="session")
def gateway_bundle(bundle_catalogue: Path, signing_key: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Signed; the embedding model's tiny weights inside."""
    return make_bundle(tmp_path_factory.mktemp("bundle") / "appliance.tar", bundle_catalogue,
                       "--sign", str(signing_key))


@pytest.fixture(scope="session")
def newer_bundle(bundle_catalogue: Path, signing_key: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another version (its catalogue differs), signed by the same key, without the weights."""
    catalogue = tmp_path_factory.mktemp("newer") / "models.toml"
    catalogue.write_text('[settings]\nport = 8181\n\n' + bundle_catalogue.read_text())
    return make_bundle(catalogue.parent / "appliance-newer.tar", catalogue, "--no-models", "--sign", str(signing_key))


@pytest.fixture(scope="session")
def unsigned_bundle(gateway_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The gateway bundle with its signatures taken out, as `bundle create` without --sign makes it."""
    return rebuilt(gateway_bundle, tmp_path_factory.mktemp("unsigned") / "appliance-unsigned.tar",
                   drop=("MANIFEST.json.sig", "SHA256SUMS.sig"))
