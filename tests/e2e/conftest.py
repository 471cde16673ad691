"""Fixtures the multimodal suites (chat and Responses media) share."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from appliance.engines.multimodal import MultimodalFacts, read_facts

OMNI = "scailabs/poolnoodle-omni"


@pytest.fixture(scope="module")
def facts(tiny_catalogue: Path) -> MultimodalFacts:
    """What an image or a sound costs the tiny omni model, read from its processor as the gateway reads it."""
    table = next(t for t in tomllib.loads(tiny_catalogue.read_text())["model"] if t["slug"] == OMNI)
    found = read_facts(tiny_catalogue.parent / table["path"], table["engine_options"])
    assert found is not None
    return found
