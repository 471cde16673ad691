"""How much text a model is handed at most, checked in bytes before any engine is asked.

An engine must tokenize what it is sent before it can refuse it for being over
its window, and tokenizing tens of megabytes ties up a worker for many seconds
(a 28 MB embeddings input once took 31 s and cost every other client of the
model its requests). So the gateway refuses, at once:

- a text longer than ``BYTES_PER_TOKEN`` bytes for each token of the model's
  window, and never less than ``MIN_TEXT_BYTES`` (an engine truncates what is
  past its window; up to that much is worth its tokenizing): far more than any
  text that fits the window in practice (about 4 bytes a token);
- a request whose texts together are longer than ``BYTES_PER_TOKEN`` bytes for
  each of ``REQUEST_TOKENS``, OpenAI's limit of tokens in one embeddings request (9.6 MB).

A model without a known window takes at most ``DEFAULT_MAX_BYTES`` per text.
"""

from __future__ import annotations

from appliance.catalogue import ModelEntry
from appliance.serving.errors import ApiError, Reason, validation_error

BYTES_PER_TOKEN = 32
MIN_TEXT_BYTES = 256 * 1024
DEFAULT_MAX_BYTES = 1024 * 1024
REQUEST_TOKENS = 300_000
MAX_REQUEST_BYTES = REQUEST_TOKENS * BYTES_PER_TOKEN


def max_text_bytes(entry: ModelEntry) -> int:
    if not entry.context_window:
        return DEFAULT_MAX_BYTES
    return max(MIN_TEXT_BYTES, entry.context_window * BYTES_PER_TOKEN)


def check_texts(entry: ModelEntry, texts: list[str], field: str) -> None:
    """Refuse the first of ``texts`` (``field[i]``) longer than the model takes, or all of them together."""
    limit = max_text_bytes(entry)
    total = 0
    for index, text in enumerate(texts):
        size = len(text) if text.isascii() else len(text.encode())
        if size > limit:
            raise too_long(entry, f"{field}[{index}]", limit)
        total += size
    if total > MAX_REQUEST_BYTES:
        raise validation_error(field, f"the texts together are {total} bytes; one request takes at most "
                                      f"{MAX_REQUEST_BYTES} (about {REQUEST_TOKENS} tokens): split it")


def check_total(entry: ModelEntry, size: int, field: str) -> None:
    """Refuse a prompt (``field``: messages, prompt) whose text takes more than the model takes."""
    limit = max_text_bytes(entry)
    if size > limit:
        raise too_long(entry, field, limit)


def too_long(entry: ModelEntry, field: str, limit: int) -> ApiError:
    window = f"a window of {entry.context_window} tokens" if entry.context_window else "no known window"
    error = validation_error(field, f"longer than model '{entry.slug}' takes ({window}: at most {limit} bytes of "
                                    "text); shorten or split it")
    if entry.context_window:  # text this long cannot fit the window: OpenAI's code, which clients trim history on
        error.reason = Reason.CONTEXT_LENGTH_EXCEEDED
    return error
