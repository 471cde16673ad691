"""A tiny sentence-transformers model: random BERT weights, 1536-dimensional normalised output.

Shaped like OpenAI's text-embedding-3-small (1536 dimensions), so clients
written for it work against the demo; only the weights are meaningless.
"""

from __future__ import annotations

import shutil
import string
import tempfile
from pathlib import Path
from typing import Any

from appliance.tiny_models.registry import TinyModel

OUTPUT_DIM = 1536
MAX_TOKENS = 256

_WORDS = (
    "a man is eating food bread piece of the quick brown fox jumps over lazy dog hello world first second "
    "text embedding model appliance inference server cat sat on mat sky blue green red question answer"
).split()


def _vocab() -> dict[str, int]:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    pieces = ["##" + c for c in string.ascii_lowercase + string.digits]
    tokens = list(dict.fromkeys(specials + chars + pieces + sorted(set(_WORDS))))
    return {token: index for index, token in enumerate(tokens)}


def build(out: Path, seed: int = 0) -> None:
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "bert"
        base.mkdir()
        tokenizer = BertTokenizerFast(vocab=_vocab(), do_lower_case=True)
        config = BertConfig(vocab_size=len(_vocab()), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, max_position_embeddings=MAX_TOKENS)
        BertModel(config).save_pretrained(base)
        tokenizer.save_pretrained(base)
        modules = [
            Transformer(str(base), max_seq_length=MAX_TOKENS),
            Pooling(32, pooling_mode="mean"),
            Dense(32, OUTPUT_DIM, activation_function=torch.nn.Tanh()),
            Normalize(),
        ]
        if out.exists():
            shutil.rmtree(out)
        SentenceTransformer(modules=modules, device="cpu").save(str(out))


def catalogue(path: Path) -> list[dict[str, Any]]:
    return [{
        "slug": "openai/text-embedding-3-small",
        "display_name": "Tiny embedding model (random weights, 1536 dimensions)",
        # OpenAI's bare names (LlamaIndex's OpenAIEmbedding accepts only those; LangChain's default is ada-002).
        "aliases": ["scailabs/tiny-embed", "text-embedding-3-small", "text-embedding-3-large",
                    "text-embedding-ada-002"],
        "modality": "embedding",
        "engine": "sentence-transformers",
        "path": str(path),
        "load": "startup",
        "context_window": MAX_TOKENS,
    }]


TINY = TinyModel(name="embed-1536", version="2", build=build, catalogue=catalogue)
