"""The gateway never imports torch or an engine library: engines live in their workers."""

from __future__ import annotations

import subprocess
import sys

ENGINE_LIBRARIES = ["torch", "vllm", "diffusers", "faster_whisper", "piper", "sentence_transformers",
                    "transformers", "ctranslate2", "onnxruntime"]


def test_the_gateway_and_cli_import_no_engine_library() -> None:
    probe = ("import sys, appliance.cli, appliance.gateway.app; "
             f"loaded = [m for m in {ENGINE_LIBRARIES!r} if m in sys.modules]; print(loaded)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
