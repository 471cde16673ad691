"""Upper bounds reserved before a request runs, and units read from the engine's answer."""

from __future__ import annotations

from pathlib import Path

from appliance.accounting.units import (TEMPLATE_TOKENS_PER_MESSAGE, TEMPLATE_TOKENS_PER_REQUEST, Units,
                                        apply_rerank_usage, completion_bound, embed_bound, read_usage, rerank_bound,
                                        speech_seconds, text_bytes)
from appliance.catalogue import ModelEntry


def chat_model(**fields: object) -> ModelEntry:
    return ModelEntry(slug="m", modality="chat", engine="transformers", path=Path("/x"), **fields)


def test_a_prompt_is_bounded_by_its_utf8_bytes_plus_the_template() -> None:
    messages = [{"role": "user", "content": "héllo"}]  # é is two bytes
    bound = completion_bound(messages, None, None, 10, chat_model())
    assert bound == TEMPLATE_TOKENS_PER_REQUEST + TEMPLATE_TOKENS_PER_MESSAGE + text_bytes(messages[0]) + 10
    assert text_bytes("héllo") == 6


def test_without_max_tokens_the_models_output_limit_bounds_the_answer_and_the_window_bounds_all() -> None:
    messages = [{"role": "user", "content": "x" * 100}]
    assert completion_bound(messages, None, None, None, chat_model(max_output_tokens=50)) > 50
    assert completion_bound(messages, None, None, None, chat_model(context_window=120)) == 120
    assert completion_bound(None, [1, 2, 3], None, 4, chat_model()) == 7  # a prompt of token ids is exact


def test_each_embedding_input_is_bounded_by_the_window() -> None:
    entry = ModelEntry(slug="e", modality="embedding", engine="sentence-transformers", path=Path("/x"),
                       context_window=16)
    assert embed_bound(["a" * 100, "b"], entry) == 16 + 1 + 8


def test_each_rerank_pair_is_the_query_beside_a_document_bounded_by_the_window() -> None:
    entry = ModelEntry(slug="r", modality="rerank", engine="sentence-transformers", path=Path("/x"),
                       context_window=64)
    assert rerank_bound("qué", ["a" * 100, "b", ""], entry) == 64 + (4 + 1 + 4) + (4 + 0 + 4)  # é is two bytes
    unbounded = entry.model_copy(update={"context_window": None})
    assert rerank_bound("q", ["a" * 100], unbounded) == 1 + 100 + 4


def test_a_rerank_answer_counts_every_token_read_as_input() -> None:
    units = Units()
    apply_rerank_usage(units, {"total_tokens": 40})  # Jina's and Infinity's, as the worker's: total_tokens
    assert (units.tokens_in, units.tokens_out, units.known) == (40, 0, True)
    apply_rerank_usage(units, {"prompt_tokens": 12})
    assert units.tokens_in == 12
    untouched = Units()
    apply_rerank_usage(untouched, None)
    assert not untouched.known


def test_usage_is_read_from_the_end_of_an_answer_without_decoding_it_all() -> None:
    answer = b'{"choices":[{"message":{"content":"say \\"usage\\": 5"}}],"usage":{"prompt_tokens":4,' \
             b'"completion_tokens":2,"total_tokens":6}}'
    assert read_usage(answer) == {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
    assert read_usage(b'{"data": []}') is None


def test_speech_seconds_are_exact_for_pcm_and_wav_and_estimated_otherwise() -> None:
    assert speech_seconds("pcm", 48000, 24000, 10, 1.0) == 1.0
    assert speech_seconds("wav", 44 + 96000, 24000, 10, 1.0) == 2.0
    assert speech_seconds("mp3", 12345, 24000, 30, 2.0) == 1.0
