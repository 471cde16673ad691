"""`appliance models import`: a model from a disk (a directory or a tar) into the models dir and the catalogue.

Nothing is changed until every check has passed: the slug is free, the files are those the engine
needs, the hashes match the source's manifest (SHA256SUMS or MANIFEST.json) when it has one. The
weights are copied to a hidden directory and renamed into place; the catalogue is rewritten with
the new [[model]] table appended, through a temporary file and one rename.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from appliance.bundle.manifest import BundleError, hash_stream, human_size, safe_member_name
from appliance.catalogue import CatalogueError, parse_catalogue
from appliance.engines.registry import ENGINES, engine_spec

MANIFEST_FILES = ("SHA256SUMS", "MANIFEST.json")


class ImportProblem(ValueError):
    """The model cannot be imported; the message names the model or the file."""


@dataclass(frozen=True)
class ImportRequest:
    source: Path
    slug: str
    engine: str
    modality: str
    config: Path
    models_dir: Path
    extra: dict[str, Any]  # further [[model]] fields: aliases, load, gpu_memory_gb, …


def missing_files(directory: Path, engine: str, modality: str | None = None) -> list[str]:
    required = engine_spec(engine, modality).required_files
    return [pattern for pattern in required if not any(directory.glob(pattern))]


def _expected_hashes(directory: Path) -> dict[str, str] | None:
    """{relative path: sha256} from the source's manifest, or None when it has none."""
    sums = directory / "SHA256SUMS"
    if sums.is_file():
        expected = {}
        for line in sums.read_text().splitlines():
            if line.strip():
                digest, _, name = line.strip().partition(" ")
                expected[name.strip().lstrip("*").removeprefix("./")] = digest.lower()
        return expected
    manifest = directory / "MANIFEST.json"
    if manifest.is_file():
        try:
            files = json.loads(manifest.read_text())["files"]
            return {name: entry["sha256"] for name, entry in files.items()}
        except (ValueError, KeyError, TypeError) as exc:
            raise ImportProblem(f"{manifest}: not a manifest with 'files' ({exc})") from None
    return None


def _files(directory: Path) -> Iterator[Path]:
    """The model's files. A link is followed only to a file inside the model's directory: one leading out of it
    could copy any file the importer (often root) may read into a directory the service shares."""
    root = directory.resolve()
    for path in sorted(directory.rglob("*")):
        if path.is_symlink():
            target = path.resolve()
            if path.is_dir() or not target.is_file() or not target.is_relative_to(root):
                what = "the directory" if path.is_dir() else "the file" if target.is_file() else "nothing:"
                raise ImportProblem(f"{path}: a link to {what} {target}, not a file inside the model's directory; "
                                    "copy the file itself into it (links are followed only within it)")
        if path.is_file():
            yield path


def _check_catalogue(request: ImportRequest, table: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The catalogue's text and data, after refusing a slug or alias that is already there."""
    try:
        text = request.config.read_text()
        data = tomllib.loads(text)
        catalogue = parse_catalogue(data, request.config, request.config.parent, check_paths=False)
    except FileNotFoundError:
        raise ImportProblem(f"{request.config}: no such catalogue file") from None
    except (tomllib.TOMLDecodeError, CatalogueError) as exc:
        raise ImportProblem(f"{request.config}: {exc}") from None
    for name in (request.slug, *table.get("aliases", ())):
        if (other := catalogue.get(name)) is not None:
            raise ImportProblem(f"model '{request.slug}': the name '{name}' is already used by '{other.slug}' "
                                f"in {request.config}; pick another slug or remove that entry first")
    return text, data


def _source_directory(source: Path, scratch: Path) -> Path:
    """The model directory of ``source``: itself, or a tar unpacked into ``scratch`` (its one top directory)."""
    if source.is_dir():
        return source
    if not source.is_file():
        raise ImportProblem(f"{source}: no such directory or file")
    try:
        with tarfile.open(source) as tar:
            for member in tar.getmembers():
                if not (member.isfile() or member.isdir()):
                    raise ImportProblem(f"{source}: {member.name}: only files and directories can be imported")
                try:
                    safe_member_name(member.name.removeprefix("./") or ".")
                except BundleError:
                    raise ImportProblem(f"{source}: {member.name}: a path that leads out of the model's directory; "
                                        "nothing was imported") from None
            tar.extractall(scratch, filter="data")
    except tarfile.TarError as exc:
        raise ImportProblem(f"{source}: not a readable tar ({exc})") from None
    entries = list(scratch.iterdir())
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else scratch


def import_model(request: ImportRequest, progress: Callable[[str], None] = print) -> Path:
    """Import the model; returns its new directory. Raises ImportProblem with nothing changed."""
    local = [name for name, spec in ENGINES.items() if spec.local]
    if request.engine not in local:
        raise ImportProblem(f"engine '{request.engine}': not one that serves local weights ({', '.join(local)})")
    if request.modality not in ENGINES[request.engine].modalities:
        raise ImportProblem(f"engine '{request.engine}' cannot serve modality '{request.modality}'")
    table = {"slug": request.slug, "modality": request.modality, "engine": request.engine, **request.extra}
    text, data = _check_catalogue(request, table)
    request.models_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".import-", dir=request.models_dir) as scratch:
        source = _source_directory(request.source, Path(scratch) / "unpacked")
        name = request.source.name.split(".tar")[0] if source.name == "unpacked" else source.name
        final = request.models_dir / name
        if final.exists():
            raise ImportProblem(f"model '{request.slug}': {final} already exists; import under another name")
        if missing := missing_files(source, request.engine, request.modality):
            raise ImportProblem(f"{request.source}: a {request.engine} model needs {' and '.join(missing)}, "
                                "which the directory does not have")
        copy = Path(scratch) / "copy"
        _copy_checked(source, copy, _expected_hashes(source), progress)
        table["path"] = str(final)
        new_text = text + ("" if text.endswith("\n") or not text else "\n") + "\n" + tomli_w.dumps({"model": [table]})
        try:
            parse_catalogue(tomllib.loads(new_text), request.config, request.config.parent, check_paths=False)
        except CatalogueError as exc:
            raise ImportProblem(str(exc)) from None
        copy.rename(final)
    try:
        _replace_text(request.config, new_text)
    except OSError:
        shutil.rmtree(final, ignore_errors=True)  # a catalogue that cannot be written: leave no orphan weights
        raise
    return final


def _copy_checked(source: Path, target: Path, expected: dict[str, str] | None,
                  progress: Callable[[str], None]) -> None:
    """Copy every file, hashing it on the way; with a manifest, every file must be in it and match."""
    found: set[str] = set()
    for path in _files(source):
        name = path.relative_to(source).as_posix()
        if name in MANIFEST_FILES:
            continue
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        with path.open("rb") as reader, destination.open("wb") as writer:
            digest, size = hash_stream(reader, writer)
        if expected is not None:
            if name not in expected:
                raise ImportProblem(f"{path}: not listed in the model's manifest")
            if expected[name] != digest:
                raise ImportProblem(f"{path}: sha256 mismatch: it is not the file the manifest lists")
        found.add(name)
        progress(f"copied {name} ({human_size(size)}){' sha256 ok' if expected is not None else ''}")
    if expected is not None and (absent := sorted(set(expected) - found)):
        raise ImportProblem(f"{source}: files of the manifest are missing: {', '.join(absent[:5])}")


def _replace_text(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    shutil.copymode(path, partial)
    os.replace(partial, path)
