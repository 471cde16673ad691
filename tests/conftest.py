"""Shared fixtures: tiny models built once, and real `appliance serve` processes to talk HTTP to."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w

from tests.support.appliance import RunningAppliance, start_appliance

REPO = Path(__file__).resolve().parent.parent
TINY_DIR = REPO / ".cache" / "tiny-models"

os.environ.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})


@pytest.fixture(scope="session")
def tiny_catalogue() -> Path:
    """models.toml of every tiny model, built once (later runs reuse what is built)."""
    result = subprocess.run([sys.executable, "-m", "appliance.cli", "tiny-models", str(TINY_DIR)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    return TINY_DIR / "models.toml"


def catalogue_subset(tiny_catalogue: Path, slugs: list[str], target: Path, **changes: object) -> Path:
    """A models.toml with only ``slugs`` of the tiny catalogue (paths made absolute)."""
    data = tomllib.loads(tiny_catalogue.read_text())
    models = []
    for table in data["model"]:
        if table["slug"] in slugs:
            table = {**table, "path": str((tiny_catalogue.parent / table["path"]).resolve()), **changes}
            models.append(table)
    assert {m["slug"] for m in models} == set(slugs), f"not in the tiny catalogue: {slugs}"
    target.write_text(tomli_w.dumps({"model": models}))
    return target


@pytest.fixture(scope="session")
def embed_appliance(tiny_catalogue: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAppliance]:
    """One appliance serving the tiny embedding model, shared by the embed tests."""
    state = tmp_path_factory.mktemp("embed-state")
    catalogue = catalogue_subset(tiny_catalogue, ["openai/text-embedding-3-small"], state / "models.toml")
    with start_appliance(catalogue, state) as running:
        yield running


@pytest.fixture(scope="session")
def rerank_appliance(tiny_catalogue: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAppliance]:
    """One appliance serving the tiny reranker (and, never loaded, the tiny embedding model), shared by the rerank
    tests: tests/e2e/test_rerank_api.py and test_rerank_clients.py."""
    state = tmp_path_factory.mktemp("rerank-state")
    catalogue = catalogue_subset(tiny_catalogue, ["scailabs/tiny-rerank", "openai/text-embedding-3-small"],
                                 state / "models.toml")
    tables = tomllib.loads(catalogue.read_text())["model"]
    # max_length: an option of the CrossEncoder worker only (the supervisor once read a reranker's options as the
    # embedding worker's, and stopped serving it).
    catalogue.write_text(tomli_w.dumps({"model": [
        {**t, "load": "startup", "engine_options": {"max_length": 512}} if t["modality"] == "rerank"
        else {**t, "load": "on-demand"} for t in tables]}))
    with start_appliance(catalogue, state) as running:
        yield running


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--fuzz-long", action="store_true", default=False,
                     help="fuzz the served OpenAPI with thousands of requests instead of a few hundred")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: starts real engines; part of the default run")


__all__ = ["catalogue_subset", "shutil"]
