"""The floors of the package, kept by its imports.

``gateway/`` (HTTP) stands on ``batch/`` and ``serving/``; ``batch/`` stands on
``serving/``; ``serving/`` on everything below it; ``protocol/`` (the contract's
models) on nothing of the state DB. And the gateway never imports torch or an
engine library: engines live in their workers.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "appliance"

ENGINE_LIBRARIES = ["torch", "vllm", "diffusers", "faster_whisper", "piper", "sentence_transformers",
                    "transformers", "ctranslate2", "onnxruntime"]

# floor → the packages of the appliance it must not import (directly, at any depth of its modules).
FORBIDDEN = {
    "serving": ("appliance.gateway", "appliance.batch", "appliance.cli"),
    "batch": ("appliance.gateway", "appliance.cli"),
    "protocol": ("appliance.db", "appliance.gateway", "appliance.serving", "appliance.batch"),
}


def imports_of(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_each_floor_imports_nothing_from_the_floors_above_it() -> None:
    breaches = []
    for floor, forbidden in FORBIDDEN.items():
        for path in sorted((PACKAGE / floor).rglob("*.py")):
            for name in sorted(imports_of(path)):
                if name.startswith(forbidden):
                    breaches.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
    assert breaches == []


def test_the_checker_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    module = tmp_path / "late.py"
    module.write_text("def f():\n    from appliance.gateway.errors import ok\n    import appliance.batch.store\n")
    assert {"appliance.gateway.errors", "appliance.batch.store"} <= imports_of(module)


def test_the_gateway_and_cli_import_no_engine_library() -> None:
    probe = ("import sys, appliance.cli, appliance.gateway.app; "
             f"loaded = [m for m in {ENGINE_LIBRARIES!r} if m in sys.modules]; print(loaded)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
