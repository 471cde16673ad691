"""Make the PyPI torchvision importable next to the CPU build of torch (run by scripts/setup in .venv-vllm).

PyPI's torchvision wheels for Linux are CUDA builds: their C extension needs
CUDA's libtorch and cannot load next to torch's CPU build (and no CPU wheel is
on PyPI). torchvision guards its Meta registrations of the extension's
operators on the extension having loaded (``extension._has_ops()``), except
two (``nms``, ``qnms``), whose registration then fails and with it ``import
torchvision``. Guarding those two like the others leaves torchvision's
pure-Python transforms working, which is all vLLM's Qwen2-VL/Qwen2.5-Omni
image processing needs (transformers' image processors call
``torchvision.transforms.v2.functional``). Idempotent; does nothing where the
extension loads (a CUDA torch, or a CPU torchvision).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

UNGUARDED = ('@torch.library.register_fake("torchvision::nms")', '@torch.library.register_fake("torchvision::qnms")')


def guarded(decorator: str) -> str:
    return f"@({decorator[1:]} if torchvision.extension._has_ops() else (lambda fn: fn))"


def imports() -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "import torchvision.transforms.v2.functional"],
                          capture_output=True, text=True)


def main() -> int:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None or imports().returncode == 0:
        return 0
    source = Path(spec.origin).parent / "_meta_registrations.py"
    text = source.read_text()
    missing = [decorator for decorator in UNGUARDED if decorator not in text]
    if missing:
        print(f"torchvision-without-cuda: {source} lacks {missing}; this torchvision needs another fix",
              file=sys.stderr)
        return 1
    for decorator in UNGUARDED:
        text = text.replace(decorator, guarded(decorator))
    source.write_text(text)
    for cached in (source.parent / "__pycache__").glob("_meta_registrations.*.pyc"):
        cached.unlink()
    result = imports()
    if result.returncode != 0:
        print(f"torchvision-without-cuda: still not importable:\n{result.stderr[-2000:]}", file=sys.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
