"""Pair scoring with tokenization ahead of the model: the very scores of CrossEncoder.predict, pair for pair."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from appliance.workers.pair_scoring import PairScorer


@pytest.fixture(scope="module")
def model(tiny_catalogue: Path):  # type: ignore[no-untyped-def]
    from sentence_transformers import CrossEncoder

    return CrossEncoder(str(tiny_catalogue.parent / "rerank-tiny"), device="cpu", local_files_only=True)


def test_scores_are_predicts_in_the_callers_order_across_uneven_batches(model) -> None:  # type: ignore[no-untyped-def]
    pairs = [(f"query {i % 3}", "paris berlin " * (i * 7 % 50) + f"doc {i}") for i in range(23)]
    pairs += [("q", ""), ("what is the capital of france", "paris " * 900)]  # empty, and cut to the window
    scores = PairScorer(model, batch_size=4)(pairs)
    assert scores.dtype == np.float32 and scores.shape == (len(pairs),)
    assert np.allclose(scores, model.predict(pairs, batch_size=4, show_progress_bar=False), atol=1e-6)


def test_no_pairs_no_scores(model) -> None:  # type: ignore[no-untyped-def]
    assert PairScorer(model, batch_size=4)([]).shape == (0,)
