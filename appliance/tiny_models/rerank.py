"""A tiny cross-encoder: a random-weight BERT sequence classifier with one label, as rerankers are.

Saved as transformers saves it (config.json, weights, tokenizer), the layout
of most rerankers on the Hub, which sentence-transformers' CrossEncoder loads
as it is. Its weights are drawn wider than BERT's default so that different
documents get clearly different (if meaningless) scores: ordering is testable.
"""

from __future__ import annotations

import shutil
import string
from pathlib import Path
from typing import Any

from appliance.tiny_models.registry import TinyModel

MAX_TOKENS = 512  # the window of the common BERT-sized rerankers (ms-marco MiniLM, bge-reranker-base)
# The shape of cross-encoder/ms-marco-MiniLM-L6-v2: benchmarks build it (random weights) for a realistic cost.
MINILM_SHAPE = {"hidden": 384, "layers": 6, "heads": 12, "intermediate": 1536}

_WORDS = (
    "what is the capital of france paris berlin london city population river museum how many people live in "
    "a an and or to for with on by from this that document query answer question search rerank relevant "
    "model server appliance box inference retrieval embedding chunk text first second third"
).split()


def _vocab() -> dict[str, int]:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    pieces = ["##" + c for c in string.ascii_lowercase + string.digits]
    tokens = list(dict.fromkeys(specials + chars + pieces + sorted(set(_WORDS))))
    return {token: index for index, token in enumerate(tokens)}


def build(out: Path, seed: int = 0, hidden: int = 32, layers: int = 2, heads: int = 2, intermediate: int = 64) -> None:
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    torch.manual_seed(seed)
    vocab = _vocab()
    tokenizer = BertTokenizerFast(vocab=vocab, do_lower_case=True, model_max_length=MAX_TOKENS)
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                        intermediate_size=intermediate, max_position_embeddings=MAX_TOKENS, num_labels=1,
                        initializer_range=0.5)
    if out.exists():
        shutil.rmtree(out)
    BertForSequenceClassification(config).save_pretrained(out)
    tokenizer.save_pretrained(out)


def catalogue(path: Path) -> list[dict[str, Any]]:
    return [{
        "slug": "scailabs/tiny-rerank",
        "display_name": "Tiny reranker (random weights)",
        # Cohere's names, so the examples of Cohere's SDK and of the RAG frameworks run with only the URL changed.
        "aliases": ["rerank-v3.5", "cohere/rerank-v3.5"],
        "modality": "rerank",
        "engine": "sentence-transformers",
        "path": str(path),
        "load": "startup",
        "context_window": MAX_TOKENS,
    }]


TINY = TinyModel(name="rerank-tiny", version="1", build=build, catalogue=catalogue)
