"""What a tiny model is: a directory built offline in seconds, and its catalogue tables."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class TinyModel:
    name: str  # directory name under the output dir
    version: str  # bump to force a rebuild when the recipe changes
    build: Callable[[Path], None]
    catalogue: Callable[[Path], list[dict[str, Any]]]  # [[model]] tables for the built directory
