"""What a request may use at most (reserved before it runs) and what it did use (read from the engine's answer).

The gateway has no tokenizer, so a prompt's tokens are bounded by its UTF-8
bytes: byte-level BPE (GPT-2, Llama 3, Qwen, Mistral's tekken) never makes
more tokens than the text has bytes, and SentencePiece with byte fallback
makes at most one per byte too. The chat template adds its own tokens, hence an
allowance per message and per request; and a model with a context window can
never hold more than that in prompt and completion together, whatever the
template does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from appliance.catalogue import ModelEntry, Price

TEMPLATE_TOKENS_PER_REQUEST = 64  # a default system prompt, the generation prompt
TEMPLATE_TOKENS_PER_MESSAGE = 16  # role markers and separators around each message
SPECIAL_TOKENS_PER_TEXT = 8  # [CLS] / [SEP] / BOS / EOS around a text
SPECIAL_TOKENS_PER_PAIR = 4  # a cross-encoder's query–document pair: [CLS] q [SEP] d [SEP], <s> q </s></s> d </s>
DEFAULT_OUTPUT_TOKENS = 4096  # when neither the request nor the catalogue bounds the completion
SPEECH_CHARS_PER_SECOND = 15.0  # about a fast reader's pace: the estimate for compressed speech formats
PCM_BYTES_PER_SAMPLE = 2  # 16-bit mono
WAV_HEADER_BYTES = 44


@dataclass
class Units:
    """One request's use, in each modality's own units (the columns of a usage row)."""

    tokens_in: int = 0
    tokens_out: int = 0
    images: int = 0
    image_size: str | None = None
    audio_seconds_in: float = 0.0
    audio_seconds_out: float = 0.0
    characters: int = 0
    known: bool = False  # the engine's own count arrived (else a stream was cut: settle to the reservation)

    def amount(self, unit: str) -> float:
        """This use, in a budget unit."""
        if unit == "tokens":
            return self.tokens_in + self.tokens_out
        if unit == "images":
            return self.images
        return round(self.audio_seconds_in + self.audio_seconds_out, 3)


def text_bytes(value: Any) -> int:
    """UTF-8 bytes of every string in a JSON-like value (message contents, tool schemas)."""
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, dict):
        return sum(text_bytes(v) + text_bytes(k) for k, v in value.items())
    if isinstance(value, list):
        return sum(text_bytes(v) for v in value)
    return len(str(value)) if value is not None else 0


def output_bound(max_tokens: int | None, entry: ModelEntry) -> int:
    return max_tokens or entry.max_output_tokens or entry.context_window or DEFAULT_OUTPUT_TOKENS


def completion_bound(messages: list[Any] | None, prompt: Any, tools: Any, max_tokens: int | None,
                     entry: ModelEntry) -> int:
    """Tokens a chat or generate request can use at most: prompt bound plus output bound, within the window."""
    if messages is not None:
        prompt_tokens = TEMPLATE_TOKENS_PER_REQUEST + sum(TEMPLATE_TOKENS_PER_MESSAGE + text_bytes(m)
                                                          for m in messages)
        prompt_tokens += text_bytes(tools) + TEMPLATE_TOKENS_PER_MESSAGE * len(tools or [])
    elif isinstance(prompt, list) and prompt and isinstance(prompt[0], int):
        prompt_tokens = len(prompt)  # already tokens
    else:
        prompt_tokens = text_bytes(prompt) + SPECIAL_TOKENS_PER_TEXT
    total = prompt_tokens + output_bound(max_tokens, entry)
    return min(total, entry.context_window) if entry.context_window else total


def embed_bound(inputs: str | list[str], entry: ModelEntry) -> int:
    texts = [inputs] if isinstance(inputs, str) else inputs
    per_input = [text_bytes(text) + SPECIAL_TOKENS_PER_TEXT for text in texts]
    if entry.context_window:  # the embed worker refuses an input over its window
        per_input = [min(count, entry.context_window) for count in per_input]
    return sum(per_input)


def rerank_bound(query: str, documents: list[str], entry: ModelEntry) -> int:
    """Tokens a rerank request can use at most: each document is read beside the query, cut to the model's window."""
    query_bytes = text_bytes(query) + SPECIAL_TOKENS_PER_PAIR
    per_pair = [query_bytes + text_bytes(document) for document in documents]
    if entry.context_window:  # the rerank worker cuts each pair to its window (its max_length)
        per_pair = [min(count, entry.context_window) for count in per_pair]
    return sum(per_pair)


def read_usage(answer: bytes) -> dict[str, int] | None:
    """The ``usage`` object of an engine's JSON answer, found without decoding the rest (embeddings are big)."""
    at = answer.rfind(b'"usage"')
    if at < 0:
        return None
    colon = answer.find(b":", at)
    try:
        usage, _end = json.JSONDecoder().raw_decode(answer[colon + 1:].decode().lstrip())
    except (ValueError, UnicodeDecodeError):
        return None
    return usage if isinstance(usage, dict) else None


def apply_usage(units: Units, usage: dict[str, Any] | None) -> None:
    """The engine's token counts onto ``units``."""
    if not usage:
        return
    units.tokens_in = int(usage.get("prompt_tokens") or 0)
    units.tokens_out = int(usage.get("completion_tokens") or 0)
    units.known = True


def apply_rerank_usage(units: Units, usage: dict[str, Any] | None) -> None:
    """A rerank answer's count onto ``units``: every token the model read is input (vLLM and Infinity report it as
    ``total_tokens``, beside a ``prompt_tokens`` of the same or no value)."""
    if not usage:
        return
    units.tokens_in = int(usage.get("total_tokens") or usage.get("prompt_tokens") or 0)
    units.known = True


def speech_seconds(response_format: str, streamed_bytes: int, sample_rate: int, characters: int,
                   speed: float) -> float:
    """Seconds of speech sent: exact for pcm and wav (from the bytes), estimated from the text otherwise."""
    if response_format == "pcm":
        return streamed_bytes / PCM_BYTES_PER_SAMPLE / sample_rate
    if response_format == "wav":
        return max(0, streamed_bytes - WAV_HEADER_BYTES) / PCM_BYTES_PER_SAMPLE / sample_rate
    return characters / SPEECH_CHARS_PER_SECOND / speed


def cost_of(units: Units, price: Price) -> float:
    """What a request cost at the model's prices."""
    cost = (units.tokens_in * price.input_per_million + units.tokens_out * price.output_per_million) / 1_000_000
    cost += units.images * price.per_image
    cost += (units.audio_seconds_in + units.audio_seconds_out) * price.per_audio_second
    return round(cost, 9)


def cost_bound(unit: str, amount: float, price: Price) -> float:
    """The most a request can cost when it can use at most ``amount`` of ``unit`` (tokens: in or out, whichever is
    dearer)."""
    if unit == "tokens":
        return round(amount * max(price.input_per_million, price.output_per_million) / 1_000_000, 9)
    if unit == "images":
        return round(amount * price.per_image, 9)
    if unit == "audio_seconds":
        return round(amount * price.per_audio_second, 9)
    return 0.0


def price_per(unit: str, price: Price) -> float:
    """The price of one of ``unit`` (tokens: the dearer direction)."""
    return cost_bound(unit, 1.0, price) if unit != "tokens" else max(price.input_per_million,
                                                                       price.output_per_million) / 1_000_000
