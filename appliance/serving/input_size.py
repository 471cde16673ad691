"""How much text a model is handed at most, checked in bytes before any engine is asked.

An engine must tokenize what it is sent before it can refuse it for being over
its window, and tokenizing tens of megabytes ties up a worker for many seconds
(a 28 MB embeddings input once took 31 s and cost every other client of the
model its requests). So the gateway refuses, at once, any text longer than
``BYTES_PER_TOKEN`` bytes for each token the model's window holds: far more
than any text that fits the window in practice (about 4 bytes a token), so a
refused text would have been refused or truncated by the engine anyway.
A model without a known window takes at most ``DEFAULT_MAX_BYTES`` per text.
"""

from __future__ import annotations

from appliance.catalogue import ModelEntry
from appliance.serving.errors import ApiError, validation_error

BYTES_PER_TOKEN = 32
DEFAULT_MAX_BYTES = 1024 * 1024


def max_text_bytes(entry: ModelEntry) -> int:
    return entry.context_window * BYTES_PER_TOKEN if entry.context_window else DEFAULT_MAX_BYTES


def check_texts(entry: ModelEntry, texts: list[str], field: str) -> None:
    """Refuse the first of ``texts`` (``field[i]``) longer than the model takes."""
    limit = max_text_bytes(entry)
    for index, text in enumerate(texts):
        if len(text) > limit // 4 and len(text.encode()) > limit:  # len(str) ≤ its UTF-8 bytes ≤ 4 × len(str)
            raise too_long(entry, f"{field}[{index}]", limit)


def check_total(entry: ModelEntry, size: int, field: str) -> None:
    """Refuse a prompt (``field``: messages, prompt) whose text takes more than ``size`` bytes."""
    limit = max_text_bytes(entry)
    if size > limit:
        raise too_long(entry, field, limit)


def too_long(entry: ModelEntry, field: str, limit: int) -> ApiError:
    window = f"a window of {entry.context_window} tokens" if entry.context_window else "no known window"
    return validation_error(field, f"longer than model '{entry.slug}' takes ({window}: at most {limit} bytes of "
                                   "text); shorten or split it")
