"""The embeddings worker's parts, on the real tiny model: batching, truncation, encoding."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import numpy as np
import pytest

from appliance.workers.batching import Batcher
from appliance.workers.embeddings import encode_item, shape_vectors
from appliance.workers.tokens import token_counter


@pytest.fixture(scope="module")
def model(tiny_catalogue: Path):  # type: ignore[no-untyped-def]
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(tiny_catalogue.parent / "embed-1536"), device="cpu")


def test_concurrent_requests_are_coalesced_into_fewer_encode_calls(model) -> None:  # type: ignore[no-untyped-def]
    calls: list[int] = []

    def encode(texts: list[str]) -> np.ndarray:
        calls.append(len(texts))
        return model.encode(texts, convert_to_numpy=True)

    batcher = Batcher(encode, max_batch=16)
    texts = [f"text {i}" for i in range(40)]

    async def run() -> list[np.ndarray]:
        return await asyncio.gather(*(batcher.submit([text]) for text in texts))

    results = asyncio.run(run())
    assert sum(calls) == 40
    assert len(calls) < 40 and max(calls) <= 16  # batched, and never past the bound
    alone = model.encode(texts, convert_to_numpy=True)
    for i, vectors in enumerate(results):
        assert vectors.shape == (1, 1536)
        assert np.allclose(vectors[0], alone[i], atol=1e-5)  # each request gets its own rows back


def test_an_engine_failure_fails_only_its_batch() -> None:
    def encode(texts: list[str]) -> np.ndarray:
        if "boom" in texts:
            raise RuntimeError("engine exploded")
        return np.ones((len(texts), 4), dtype=np.float32)

    batcher = Batcher(encode, max_batch=1)

    async def run() -> tuple[object, np.ndarray]:
        failed = await asyncio.gather(batcher.submit(["boom"]), return_exceptions=True)
        return failed[0], await batcher.submit(["fine"])

    failure, ok = asyncio.run(run())
    assert isinstance(failure, RuntimeError)
    assert ok.shape == (1, 4)


def test_truncation_renormalises_and_full_size_passes_through() -> None:
    vectors = np.array([[3.0, 4.0, 12.0]], dtype=np.float32)
    assert np.allclose(shape_vectors(vectors, 2), [[0.6, 0.8]])
    assert shape_vectors(vectors, 3) is vectors
    assert shape_vectors(vectors, None) is vectors


def test_base64_is_little_endian_float32() -> None:
    item = encode_item(3, np.array([1.0, -2.5], dtype=np.float32), "base64")
    assert item["index"] == 3 and item["object"] == "embedding"
    assert np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4").tolist() == [1.0, -2.5]


def test_items_serialised_fast_still_fit_the_contracts_model() -> None:
    import orjson

    from appliance.protocol.embeddings import Embedding

    for fmt in ("float", "base64"):
        raw = orjson.dumps(encode_item(0, np.array([0.5, 1.0], dtype=np.float32), fmt),
                           option=orjson.OPT_SERIALIZE_NUMPY)
        item = Embedding.model_validate_json(raw)
        assert item.index == 0 and (item.embedding == [0.5, 1.0] if fmt == "float" else isinstance(item.embedding, str))


def test_tokens_are_counted_as_the_tokenizer_counts_them_and_never_truncated(model) -> None:  # type: ignore[no-untyped-def]
    texts = ["hello", "a somewhat longer sentence, with punctuation!", "word " * 2000]
    expected = [len(ids) for ids in model.tokenizer(texts, add_special_tokens=True)["input_ids"]]
    assert token_counter(model.tokenizer)(texts) == expected
    assert expected[2] > 2000  # the long text is counted whole, so the worker can refuse it by its length
