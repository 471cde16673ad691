"""Embedding inputs sent as token ids: decoded with the encoding the client used, refused when they are not ids."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest
from pydantic import ValidationError

from appliance.catalogue import ModelEntry
from appliance.protocol.embeddings import EmbeddingRequest, TextEmbeddingRequest
from appliance.serving.errors import ApiError, ErrorCode, from_validation_error
from appliance.serving.token_ids import ENCODINGS, MAX_TOKEN_IDS, encoding_of, encoding_path, texts_of

# "hello world" and "The quick brown fox" in cl100k_base, as tiktoken (and so LangChain) encodes them.
HELLO_WORLD = [15339, 1917]
QUICK_FOX = [791, 4062, 14198, 39935]


def entry(slug: str = "acme/embed", aliases: tuple[str, ...] = (), **more: object) -> ModelEntry:
    return ModelEntry(slug=slug, aliases=aliases, modality="embedding", engine="sentence-transformers",
                      path=Path("/nowhere"), **more)  # type: ignore[arg-type]


def parse(value: str) -> EmbeddingRequest:
    return EmbeddingRequest.model_validate_json('{"model": "m", "input": %s}' % value)


def refusal(value: str) -> dict[str, str]:
    with pytest.raises(ValidationError) as caught:
        parse(value)
    details = from_validation_error(caught.value).details
    assert details
    return details[0]


def test_the_four_input_shapes_of_openai() -> None:
    assert parse('"a text"').input == ["a text"]
    assert parse('["one", "two"]').input == ["one", "two"]
    assert parse("[15339, 1917]").input == [HELLO_WORLD]  # one input, as token ids
    assert parse("[[15339, 1917], [791]]").input == [HELLO_WORLD, [791]]
    assert parse('"x"').token_arrays is None and parse("[1, 2]").token_arrays == [[1, 2]]


def test_a_wrong_shape_names_the_input_that_has_it() -> None:
    assert refusal("[]")["field"] == "input"
    assert refusal("[[]]")["field"] == "input[0]"
    assert refusal("[[[1]]]")["field"] == "input[0][0]"  # one level too deep
    assert refusal('["a", 5]')["field"] == "input[1]"  # strings and ids mixed
    assert refusal('[[1], "a"]')["field"] == "input[1]"
    assert refusal("[[1, -2]]") == {"field": "input[0][1]", "message": "Input should be greater than or equal to 0"}
    assert refusal("[1.5]")["field"] == "input[0]" and refusal("[[1.0]]")["field"] == "input[0][0]"
    assert refusal('["a", ""]')["field"] == "input[1]"
    assert refusal("5")["field"] == "input" and refusal("{}")["field"] == "input"


def test_a_worker_takes_text_only() -> None:
    with pytest.raises(ValidationError):
        TextEmbeddingRequest.model_validate_json('{"model": "m", "input": [[1, 2]]}')
    assert TextEmbeddingRequest.model_validate_json('{"model": "m", "input": "x"}').input == ["x"]


def test_the_encoding_file_ships_with_the_appliance_and_is_the_published_one() -> None:
    path = encoding_path("cl100k_base")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == ENCODINGS["cl100k_base"].sha256


def test_openai_s_embedding_names_take_cl100k_base_and_others_what_the_catalogue_says() -> None:
    assert encoding_of(entry("openai/text-embedding-3-small")) == "cl100k_base"
    assert encoding_of(entry("acme/embed", aliases=("text-embedding-ada-002",))) == "cl100k_base"
    assert encoding_of(entry("baai/bge-m3")) is None
    assert encoding_of(entry("baai/bge-m3", token_encoding="cl100k_base")) == "cl100k_base"
    with pytest.raises(ValidationError):
        ModelEntry(slug="acme/chat", modality="chat", engine="transformers", path=Path("/x"),
                   token_encoding="cl100k_base")


def decode(inputs: list[str] | list[list[int]], model: ModelEntry | None = None) -> list[str]:
    return asyncio.run(texts_of(inputs, model or entry("openai/text-embedding-3-small"), "m"))


def test_token_ids_decode_to_the_text_they_encode() -> None:
    assert decode([HELLO_WORLD, QUICK_FOX]) == ["hello world", "The quick brown fox"]
    long = QUICK_FOX * 3000  # past the size that is decoded off the event loop
    assert decode([long]) == ["The quick brown fox" * 3000]
    texts = ["as", "they", "are"]
    assert decode(texts) is texts


def test_an_id_outside_the_encoding_is_refused_naming_where_it_is() -> None:
    for bad, where in (([[15339, 100300]], "input[0][1]"), ([HELLO_WORLD, [791, 100256]], "input[1][1]"),
                       ([[2 ** 40]], "input[0][0]")):
        with pytest.raises(ApiError) as caught:
            decode(bad)  # type: ignore[arg-type]
        assert caught.value.code == ErrorCode.VALIDATION_ERROR and caught.value.details
        assert caught.value.details[0]["field"] == where and "not a token id of cl100k_base" in caught.value.message


def test_a_text_only_model_and_a_request_over_openai_s_limit_are_refused() -> None:
    with pytest.raises(ApiError) as caught:
        decode([HELLO_WORLD], entry("baai/bge-m3"))
    assert caught.value.details and caught.value.details[0]["field"] == "input"
    assert "token_encoding" in caught.value.message
    with pytest.raises(ApiError) as caught:
        decode([[1] * (MAX_TOKEN_IDS // 2 + 1), [1] * (MAX_TOKEN_IDS // 2)])
    assert "at most 300000" in caught.value.message
