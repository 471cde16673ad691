"""Tiny random-weight models of every engine, built offline with a fixed seed.

Tests and CPU-only boxes serve these through the very code path production
uses; only the weights differ. Each engine adds its builder to ``TINY_MODELS``.
"""

from __future__ import annotations

from pathlib import Path

import tomli_w

from appliance.tiny_models.registry import TinyModel

STAMP = ".tiny-model-version"


def tiny_models() -> list[TinyModel]:
    # Imported here so that importing this package costs nothing until a build.
    from appliance.tiny_models import audio, chat, embeddings, images, omni, rerank

    # The text-only vLLM model before the omni one: tests/support/vllm.py serves the first vLLM model, the quicker.
    return [embeddings.TINY, rerank.TINY, audio.WHISPER, audio.PIPER, images.TINY, chat.TINY, omni.TINY]


def build_all(out_dir: Path, force: bool = False) -> Path:
    """Build every tiny model into ``out_dir`` (skipping those already built) and write its models.toml."""
    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = []
    for model in tiny_models():
        target = out_dir / model.name
        stamp = target / STAMP
        if force or not stamp.exists() or stamp.read_text().strip() != model.version:
            model.build(target)
            stamp.write_text(model.version + "\n")
        tables.extend(model.catalogue(Path(model.name)))  # relative: the directory can move
    catalogue = out_dir / "models.toml"
    header = "# Tiny random-weight models, written by `appliance tiny-models`. Rebuilt on demand; do not edit.\n"
    catalogue.write_text(header + tomli_w.dumps({"model": tables}))
    return catalogue
