"""The tiny cross-encoder: built offline in seconds, the same every time, a reranker CrossEncoder loads as such."""

from __future__ import annotations

from pathlib import Path

import tomli_w

from appliance.catalogue import load_catalogue
from appliance.tiny_models.rerank import MAX_TOKENS, TINY, build


def test_it_is_a_one_label_cross_encoder_whose_scores_differ_by_document(tmp_path: Path) -> None:
    from sentence_transformers import CrossEncoder

    build(tmp_path / "m")
    model = CrossEncoder(str(tmp_path / "m"), device="cpu", local_files_only=True)
    assert model.num_labels == 1 and model.config.architectures == ["BertForSequenceClassification"]
    assert model.max_seq_length == MAX_TOKENS
    scores = model.predict([("the capital of france", text) for text in ("paris", "berlin", "a museum")])
    assert len(set(scores.tolist())) == 3 and all(0 < score < 1 for score in scores)


def test_the_same_seed_builds_the_same_weights(tmp_path: Path) -> None:
    build(tmp_path / "a")
    build(tmp_path / "b")
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_its_catalogue_entry_is_a_rerank_model_of_sentence_transformers(tmp_path: Path) -> None:
    build(tmp_path / TINY.name)
    (tmp_path / "models.toml").write_text(tomli_w.dumps({"model": TINY.catalogue(Path(TINY.name))}))
    entry = load_catalogue(tmp_path / "models.toml").get("rerank-v3.5")
    assert entry is not None and entry.slug == "scailabs/tiny-rerank"
    assert entry.modality == "rerank" and entry.engine == "sentence-transformers"
    assert entry.path == (tmp_path / TINY.name).resolve() and entry.context_window == MAX_TOKENS
