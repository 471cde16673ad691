"""`appliance bundle create` and `bundle verify`: every file hashed, a changed byte named, signatures checked."""

from __future__ import annotations

import hashlib
import json
import sys
import tarfile
from pathlib import Path

from appliance.bundle.manifest import Manifest, compatibility_problem
from tests.bundle.conftest import EMBED, appliance, member_bytes, rebuilt, with_flipped_byte

WHEEL = "wheels/app/appliance-0.1.0-py3-none-any.whl"


def manifest_of(bundle: Path) -> Manifest:
    with tarfile.open(bundle) as tar:
        return Manifest.from_json(tar.extractfile("MANIFEST.json").read())  # type: ignore[union-attr]


def test_the_manifest_lists_every_file_with_its_sha256(gateway_bundle: Path) -> None:
    manifest = manifest_of(gateway_bundle)
    with tarfile.open(gateway_bundle) as tar:
        names = {m.name for m in tar.getmembers()} - {"MANIFEST.json", "MANIFEST.json.sig", "SHA256SUMS",
                                                      "SHA256SUMS.sig"}
        assert names == set(manifest.files)
        for name in ("scripts/install", "systemd/appliance.service", "config/models.toml", WHEEL):
            data = tar.extractfile(name).read()  # type: ignore[union-attr]
            assert manifest.files[name].sha256 == hashlib.sha256(data).hexdigest()
            assert manifest.files[name].size == len(data)
    assert manifest.target == "cpu" and manifest.python == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert any(n.startswith("wheels/app/fastapi-") for n in names)  # the gateway's dependencies travel too
    assert not any(n.startswith("wheels/app/torch-") for n in names)  # --no-engines


def test_create_shows_what_pip_fetches_and_each_file_with_its_size(gateway_bundle: Path) -> None:
    progress = gateway_bundle.with_suffix(".log").read_text()
    assert "  Collecting fastapi" in progress or "  Saved " in progress  # pip's lines, as it fetches
    total = len(manifest_of(gateway_bundle).files)
    assert f"[1/{total}] scripts/install (" in progress and f"[{total}/{total}] models/" in progress
    assert "wrote " in progress and ", signed" in progress


def test_the_models_travel_with_relative_paths_in_the_catalogue(gateway_bundle: Path, bundle_catalogue: Path) -> None:
    manifest = manifest_of(gateway_bundle)
    (model,) = manifest.models
    assert (model.slug, model.engine, model.included) == (EMBED, "sentence-transformers", True)
    assert f"models/{model.directory}/modules.json" in manifest.files
    with tarfile.open(gateway_bundle) as tar:
        catalogue = tar.extractfile("config/models.toml").read().decode()  # type: ignore[union-attr]
    assert f'path = "{model.directory}"' in catalogue and str(bundle_catalogue.parent) not in catalogue


def test_a_bundle_without_models_records_them_and_says_what_it_left_out(newer_bundle: Path) -> None:
    manifest = manifest_of(newer_bundle)
    assert [m.included for m in manifest.models] == [False]
    assert not any(n.startswith("models/") for n in manifest.files)
    assert manifest.left_out == [f"model {EMBED} (bring {manifest.models[0].directory})",
                                 "the engines' libraries", "vLLM's environment"]


def test_verify_passes_a_whole_bundle_and_lists_each_file_with_its_size(gateway_bundle: Path,
                                                                         signing_key: Path) -> None:
    result = appliance("bundle", "verify", str(gateway_bundle), "--pubkey", f"{signing_key}.pub")
    assert result.returncode == 0, result.stderr
    assert f"ok {WHEEL} (" in result.stderr and " KB)" in result.stderr
    assert ": ok, signature ok (" in result.stdout and "for cpu / Python" in result.stdout


def test_without_a_key_verify_never_says_ok(gateway_bundle: Path, tmp_path: Path) -> None:
    # A signature that is present but wrong cannot be told from a right one without the key: neither is "ok".
    forged = rebuilt(gateway_bundle, tmp_path / "forged.tar", replace={"SHA256SUMS.sig": bytes(64),
                                                                      "MANIFEST.json.sig": bytes(64)})
    for bundle in (gateway_bundle, forged):
        result = appliance("bundle", "verify", "-q", str(bundle))
        assert result.returncode == 2, result.stderr
        assert ": ok" not in result.stdout and "signature ok" not in result.stdout
        assert "NOT AUTHENTICATED: every file matches the bundle's own manifest" in result.stdout


def test_sha256sums_lists_every_file_and_the_manifest(gateway_bundle: Path) -> None:
    manifest = manifest_of(gateway_bundle)
    lines = member_bytes(gateway_bundle, "SHA256SUMS").decode().splitlines()
    listed = dict(reversed(line.split("  ", 1)) for line in lines)
    assert set(listed) == set(manifest.files) | {"MANIFEST.json"}
    assert listed["MANIFEST.json"] == hashlib.sha256(member_bytes(gateway_bundle, "MANIFEST.json")).hexdigest()
    assert all(listed[name] == entry.sha256 for name, entry in manifest.files.items())
    assert "scripts/verify-bundle" in listed  # the installed version has it for the next upgrade


def test_a_sha256sums_that_disagrees_with_the_manifest_is_refused(gateway_bundle: Path, tmp_path: Path) -> None:
    sums = member_bytes(gateway_bundle, "SHA256SUMS").replace(b"  scripts/install\n", b"  scripts/installer\n")
    changed = rebuilt(gateway_bundle, tmp_path / "changed.tar", replace={"SHA256SUMS": sums})
    result = appliance("bundle", "verify", "-q", str(changed))
    assert result.returncode == 1
    assert "SHA256SUMS does not list the files and hashes of MANIFEST.json" in result.stderr


def test_a_flipped_byte_is_reported_by_file_name(gateway_bundle: Path, tmp_path: Path) -> None:
    manifest = manifest_of(gateway_bundle)
    weights = next(n for n in manifest.files if n.endswith(".safetensors"))
    tampered = with_flipped_byte(gateway_bundle, weights, tmp_path / "tampered.tar")
    result = appliance("bundle", "verify", "-q", str(tampered))
    assert result.returncode == 1
    assert f"{weights}: sha256 mismatch" in result.stderr and "1 bad file(s)" in result.stderr


def test_a_truncated_bundle_names_the_file_that_ends_early(gateway_bundle: Path, tmp_path: Path) -> None:
    with tarfile.open(gateway_bundle) as tar:
        cut_in = tar.getmember(WHEEL)
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(gateway_bundle.read_bytes()[: cut_in.offset_data + cut_in.size // 2])
    result = appliance("bundle", "verify", str(truncated))
    assert result.returncode == 1
    assert f"the bundle is truncated: {WHEEL} ends early" in result.stderr


def test_a_signed_bundle_verifies_with_its_public_key_only(gateway_bundle: Path, signing_key: Path,
                                                           tmp_path: Path) -> None:
    good = appliance("bundle", "verify", "-q", str(gateway_bundle), "--pubkey", f"{signing_key}.pub")
    assert good.returncode == 0 and "signature ok" in good.stdout, good.stderr
    assert appliance("bundle", "keygen", str(tmp_path / "other.key")).returncode == 0
    wrong = appliance("bundle", "verify", "-q", str(gateway_bundle), "--pubkey", str(tmp_path / "other.key.pub"))
    assert wrong.returncode == 1 and "the signature of MANIFEST.json does not match" in wrong.stderr


def test_an_unsigned_bundle_is_refused_when_a_key_is_configured(unsigned_bundle: Path, signing_key: Path) -> None:
    result = appliance("bundle", "verify", "-q", str(unsigned_bundle), "--pubkey", f"{signing_key}.pub")
    assert result.returncode == 1 and "the bundle is not signed" in result.stderr


def test_a_changed_manifest_breaks_the_signature(gateway_bundle: Path, signing_key: Path, tmp_path: Path) -> None:
    with tarfile.open(gateway_bundle) as tar:
        raw = tar.extractfile("MANIFEST.json").read()  # type: ignore[union-attr]
        offset = tar.getmember("MANIFEST.json").offset_data
    changed = raw.replace(b'"target": "cpu"', b'"target": "cpx"')  # same length, so the tar stays whole
    data = bytearray(gateway_bundle.read_bytes())
    data[offset:offset + len(raw)] = changed
    forged = tmp_path / "forged.tar"
    forged.write_bytes(bytes(data))
    result = appliance("bundle", "verify", "-q", str(forged), "--pubkey", f"{signing_key}.pub")
    assert result.returncode == 1 and "does not match" in result.stderr


def test_a_bundle_for_another_box_says_what_differs(gateway_bundle: Path) -> None:
    manifest = manifest_of(gateway_bundle)
    assert compatibility_problem(manifest, "cpu", manifest.python, manifest.machine) is None
    assert "for CPU boxes and this box is a CUDA one" in compatibility_problem(manifest, "cuda", manifest.python,
                                                                               manifest.machine)
    assert "wheels are for Python 3.11 and this box's python3 is 3.12" in compatibility_problem(
        manifest, "cpu", "3.12", manifest.machine)


def test_create_refuses_a_catalogue_whose_weights_are_missing(tmp_path: Path) -> None:
    catalogue = tmp_path / "models.toml"
    catalogue.write_text('[[model]]\nslug = "a/b"\nmodality = "embedding"\nengine = "sentence-transformers"\n'
                         f'path = "{tmp_path / "nowhere"}"\n')
    result = appliance("bundle", "create", str(tmp_path / "b.tar"), "--config", str(catalogue))
    assert result.returncode == 1
    assert f"model directories not found: {tmp_path / 'nowhere'}" in result.stderr
    assert not (tmp_path / "b.tar").exists()


def test_the_manifest_is_plain_json(gateway_bundle: Path) -> None:
    with tarfile.open(gateway_bundle) as tar:
        data = json.loads(tar.extractfile("MANIFEST.json").read())  # type: ignore[union-attr]
    assert data["format"] == 1 and data["engines"] == {".venv": {}}  # --no-engines, --no-vllm
