"""One appliance on HTTPS for the module that needs it: the tiny embedding and transformers chat models."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w

from appliance.tls.lifecycle import init
from appliance.tls.store import TlsPaths
from tests.support.https import HttpsAppliance, start_https_appliance

EMBED = "openai/text-embedding-3-small"
CHAT = "scailabs/tiny-chat"


def tls_catalogue(tiny_catalogue: Path, target: Path, slugs: tuple[str, ...] = (EMBED, CHAT)) -> Path:
    """The tiny models ``slugs``, all loaded at start (paths made absolute)."""
    data = tomllib.loads(tiny_catalogue.read_text())
    models = [{**t, "path": str((tiny_catalogue.parent / t["path"]).resolve()), "load": "startup"}
              for t in data["model"] if t["slug"] in slugs]
    target.write_text(tomli_w.dumps({"model": models}))
    return target


def remote_only_catalogue(target: Path) -> Path:
    """A catalogue with nothing to start (a remote model nobody serves): a gateway up in a second, for TLS alone."""
    target.write_text('[[model]]\nslug = "acme/elsewhere"\nmodality = "embedding"\nengine = "remote"\n'
                      'url = ["http://127.0.0.1:9/v1"]\n')
    return target


@pytest.fixture(scope="module")
def https_box(tiny_catalogue: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpsAppliance]:
    root = tmp_path_factory.mktemp("https-box")
    init(TlsPaths.of(root / "tls"), ["localhost", "box.lan", "127.0.0.1"])
    catalogue = tls_catalogue(tiny_catalogue, root / "models.toml")
    with start_https_appliance(catalogue, root / "state", root / "tls") as running:
        yield running
