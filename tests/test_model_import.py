"""`appliance models import`: a model from a disk into the models dir and the catalogue, checked first,
or refused with the model or file named and nothing changed."""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
from pathlib import Path

import pytest

from tests.support.appliance import cli, start_appliance

CATALOGUE_TEXT = """# the operator's own comment stays
[[model]]
slug = "acme/existing"
aliases = ["taken"]
modality = "speech"
engine = "piper"
path = "/nowhere/piper"
"""


@pytest.fixture
def box(tmp_path: Path) -> Path:
    """A state dir with a catalogue holding one model."""
    (tmp_path / "models.toml").write_text(CATALOGUE_TEXT)
    return tmp_path


def import_model(box: Path, source: Path, slug: str, engine: str, modality: str, *extra: str):  # type: ignore[no-untyped-def]
    return cli("models", "import", str(source), "--slug", slug, "--engine", engine, "--modality", modality,
               "--config", str(box / "models.toml"), *extra, state_dir=box, timeout=120)


def unchanged(box: Path) -> bool:
    models = box / "models"
    return (box / "models.toml").read_text() == CATALOGUE_TEXT and (
        not models.exists() or [p.name for p in models.iterdir()] == [])


def test_a_directory_is_copied_and_appended_to_the_catalogue(box: Path, tiny_catalogue: Path) -> None:
    source = tiny_catalogue.parent / "whisper-tiny"
    result = import_model(box, source, "acme/whisper", "faster-whisper", "transcription", "--alias", "whisper-2")
    assert result.returncode == 0, result.stderr
    copied = box / "models" / "whisper-tiny"
    assert (copied / "model.bin").read_bytes() == (source / "model.bin").read_bytes()
    text = (box / "models.toml").read_text()
    assert text.startswith(CATALOGUE_TEXT)  # appended: the operator's comments and entries stay
    assert 'slug = "acme/whisper"' in text and f'path = "{copied}"' in text and '"whisper-2"' in text
    assert "copied model.bin (" in result.stderr
    listed = cli("models", "list", "--config", str(box / "models.toml"), state_dir=box)
    assert "acme/whisper" in listed.stdout and "faster-whisper" in listed.stdout


def test_a_tar_of_a_model_directory_is_imported(box: Path, tiny_catalogue: Path, tmp_path: Path) -> None:
    archive = tmp_path / "voice.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tiny_catalogue.parent / "piper-tiny", arcname="piper-voice")
    result = import_model(box, archive, "acme/voice", "piper", "speech")
    assert result.returncode == 0, result.stderr
    assert any((box / "models" / "piper-voice").glob("*.onnx"))
    assert not [p for p in (box / "models").iterdir() if p.name.startswith(".")]  # no scratch left behind


def test_the_files_are_checked_against_the_models_sha256sums(box: Path, tiny_catalogue: Path,
                                                            tmp_path: Path) -> None:
    source = tmp_path / "whisper"
    shutil.copytree(tiny_catalogue.parent / "whisper-tiny", source)
    sums = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(source).as_posix()}"
            for p in sorted(source.rglob("*")) if p.is_file()]
    (source / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    good = import_model(box, source, "acme/ok", "faster-whisper", "transcription")
    assert good.returncode == 0 and "sha256 ok" in good.stderr, good.stderr

    damaged = tmp_path / "damaged"
    shutil.copytree(source, damaged)
    data = bytearray((damaged / "model.bin").read_bytes())
    data[len(data) // 2] ^= 1
    (damaged / "model.bin").write_bytes(bytes(data))
    before = (box / "models.toml").read_text()
    bad = import_model(box, damaged, "acme/bad", "faster-whisper", "transcription")
    assert bad.returncode == 1 and f"{damaged / 'model.bin'}: sha256 mismatch" in bad.stderr
    assert (box / "models.toml").read_text() == before and not (box / "models" / "damaged").exists()


@pytest.mark.parametrize("slug, extra", [("acme/existing", []), ("acme/new", ["--alias", "taken"])])
def test_a_name_already_in_the_catalogue_is_refused(box: Path, tiny_catalogue: Path, slug: str,
                                                    extra: list[str]) -> None:
    result = import_model(box, tiny_catalogue.parent / "piper-tiny", slug, "piper", "speech", *extra)
    assert result.returncode == 1 and "is already used by 'acme/existing'" in result.stderr
    assert unchanged(box)


@pytest.mark.parametrize("engine, modality, needs", [
    ("diffusers", "image", "model_index.json"),
    ("sentence-transformers", "embedding", "modules.json"),
    ("piper", "speech", "*.onnx and *.onnx.json"),
])
def test_a_directory_without_the_files_its_engine_needs_is_refused(box: Path, tiny_catalogue: Path, engine: str,
                                                                   modality: str, needs: str) -> None:
    source = tiny_catalogue.parent / "whisper-tiny"
    result = import_model(box, source, "acme/wrong", engine, modality)
    assert result.returncode == 1
    assert f"{source}: a {engine} model needs {needs}, which the directory does not have" in result.stderr
    assert unchanged(box)


@pytest.mark.parametrize("source, modality, needs", [
    ("piper-tiny", "rerank", "config.json"),  # a reranker is a transformers classifier
    ("rerank-tiny", "embedding", "modules.json"),  # the same engine's embedding models are sentence-transformers'
])
def test_the_files_needed_are_those_of_the_modality(box: Path, tiny_catalogue: Path, source: str, modality: str,
                                                    needs: str) -> None:
    result = import_model(box, tiny_catalogue.parent / source, "acme/wrong", "sentence-transformers", modality)
    assert result.returncode == 1 and f"a sentence-transformers model needs {needs}" in result.stderr
    assert unchanged(box)


def test_an_engine_that_cannot_serve_the_modality_is_refused(box: Path, tiny_catalogue: Path) -> None:
    result = import_model(box, tiny_catalogue.parent / "piper-tiny", "acme/x", "piper", "image")
    assert result.returncode == 1 and "engine 'piper' cannot serve modality 'image'" in result.stderr
    assert unchanged(box)


def test_an_imported_model_is_served(tmp_path: Path, tiny_catalogue: Path) -> None:
    box = tmp_path / "box"
    box.mkdir()
    (box / "models.toml").write_text("")
    result = import_model(box, tiny_catalogue.parent / "embed-1536", "acme/embed", "sentence-transformers",
                          "embedding", "--load", "startup")
    assert result.returncode == 0, result.stderr
    assert cli("models", "check", "--config", str(box / "models.toml"), state_dir=box).returncode == 0
    with start_appliance(box / "models.toml", box / "state") as running:
        with running.client(running.create_key()) as client:
            response = client.post("/v1/inference/embed", json={"model": "acme/embed", "input": ["hello"]})
    assert response.status_code == 200, response.text
    assert len(response.json()["data"]["data"][0]["embedding"]) > 0


def test_a_link_out_of_the_source_is_refused_and_nothing_is_copied(box: Path, tiny_catalogue: Path,
                                                                   tmp_path: Path) -> None:
    secret = tmp_path / "host-secret"
    secret.write_text("a host file only root may read")
    secret.chmod(0o600)
    source = tmp_path / "whisper"
    shutil.copytree(tiny_catalogue.parent / "whisper-tiny", source)
    (source / "notes.txt").symlink_to(secret)
    result = import_model(box, source, "acme/whisper", "faster-whisper", "transcription")
    assert result.returncode == 1
    assert (f"{source / 'notes.txt'}: a link to the file {secret}, not a file inside the model's directory"
            in result.stderr)
    assert unchanged(box)
    models = box / "models"
    assert not models.exists() or not any(p.read_bytes() == secret.read_bytes() for p in models.rglob("*")
                                          if p.is_file())


def test_a_link_to_a_file_inside_the_source_is_copied_as_a_file(box: Path, tiny_catalogue: Path,
                                                                 tmp_path: Path) -> None:
    source = tmp_path / "whisper"
    shutil.copytree(tiny_catalogue.parent / "whisper-tiny", source)
    (source / "config-copy.json").symlink_to(source / "config.json")
    result = import_model(box, source, "acme/whisper", "faster-whisper", "transcription")
    assert result.returncode == 0, result.stderr
    copied = box / "models" / "whisper" / "config-copy.json"
    assert not copied.is_symlink() and copied.read_bytes() == (source / "config.json").read_bytes()


def test_a_tar_with_a_path_out_of_the_model_is_one_sentence(box: Path, tmp_path: Path) -> None:
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        data = b"x"
        info = tarfile.TarInfo("../escape.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    result = import_model(box, archive, "acme/evil", "piper", "speech")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (f"error: {archive}: ../escape.txt: a path that leads out of the model's "
                                     "directory; nothing was imported")
    assert unchanged(box) and not (tmp_path / "escape.txt").exists()


def test_the_closing_line_says_a_reload_serves_it(box: Path, tiny_catalogue: Path) -> None:
    result = import_model(box, tiny_catalogue.parent / "piper-tiny", "acme/voice", "piper", "speech")
    assert result.returncode == 0, result.stderr
    assert f"To serve it without a restart: appliance models reload --config {box / 'models.toml'}" in result.stdout
    assert "after a restart" not in result.stdout
