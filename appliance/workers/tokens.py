"""Counting tokens as a model's own tokenizer counts them, off the engine's copy of it."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any


def token_counter(tokenizer: Any, special_tokens: bool = True) -> Callable[[list[str]], list[int]]:
    """Tokens per text (with the special tokens of one text, or none), never truncated.

    Fast tokenizers are not thread-safe: counting on the event loop while the
    engine thread encodes corrupted the engine's padding, so the counter gets its
    own copy. A fast one is asked through its Rust ``encode_batch``: the Python
    ``__call__`` around it was a sixth of the embeddings worker's CPU per request.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
    if backend is None:
        own = copy.deepcopy(tokenizer)
        return lambda texts: [len(ids) for ids in own(texts, add_special_tokens=special_tokens)["input_ids"]]
    rust = copy.deepcopy(backend)
    rust.no_truncation()
    rust.no_padding()
    return lambda texts: [len(encoding.ids) for encoding in rust.encode_batch(texts, add_special_tokens=special_tokens)]
