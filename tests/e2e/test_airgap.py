"""Proof of the air gap: the real appliance on every tiny model, vLLM included, in a network namespace with
loopback only. A request of every modality is answered, and no process of the appliance holds a socket
that is not loopback nor makes a DNS query or an HTTP(S) connection (traps listen for both)."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import tomli_w

from tests.conftest import REPO
from tests.support.netns import needs_namespace, offline

pytestmark = [needs_namespace, pytest.mark.slow]
SMALL_IMAGE = "256x256"  # a size the tiny pipeline makes in a moment


def every_tiny_model(tiny_catalogue: Path, target: Path) -> Path:
    data = tomllib.loads(tiny_catalogue.read_text())
    for table in data["model"]:
        table["path"] = str((tiny_catalogue.parent / table["path"]).resolve())
        if table["engine"] == "diffusers":
            table["engine_options"]["sizes"].append(SMALL_IMAGE)
    target.write_text(tomli_w.dumps(data))
    return target


def run_offline(catalogue: Path, state: Path, *extra: str) -> dict:
    report = state.parent / "airgap-report.json"
    result = subprocess.run(offline([sys.executable, "-m", "tests.support.airgap", "--catalogue", str(catalogue),
                                     "--state", str(state), "--report", str(report), *extra]),
                            cwd=REPO, capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(report.read_text())


@pytest.fixture(scope="module")
def report(tiny_catalogue: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    state = tmp_path_factory.mktemp("airgap") / "state"
    return run_offline(every_tiny_model(tiny_catalogue, state.parent / "models.toml"), state)


def test_the_namespace_has_loopback_only_and_the_traps_catch_a_call_out(report: dict) -> None:
    assert report["interfaces"] == ["lo"]
    assert any(hit.startswith("udp 53") and "huggingface" in hit for hit in report["control"]), report["control"]


def test_every_modality_is_answered_offline(report: dict) -> None:
    responses = report["responses"]
    assert responses["embedding"] == [200, 1536], responses
    assert responses["chat-vllm"][0] == 200 and responses["chat-transformers"][0] == 200, responses
    assert responses["image"] == [200, True], responses
    assert responses["transcription"][0] == 200, responses
    assert responses["speech"][0] == 200 and responses["speech"][1] > 44, responses


def test_no_process_of_the_appliance_reaches_out(report: dict) -> None:
    assert report["foreign_sockets"] == [], report["foreign_sockets"]
    assert report["trap_hits"] == [], report["trap_hits"]
    # every engine's process was watched, vLLM's own server among them
    watched = "\n".join(report["processes"])
    for module in ("vllm", "appliance.workers.embeddings", "appliance.workers.images",
                   "appliance.workers.transcription", "appliance.workers.speech"):
        assert module in watched, watched
    assert report["samples"] > 10


def test_a_missing_catalogue_path_is_named_and_nothing_is_fetched(report: dict) -> None:
    missing = report["missing_path"]
    assert missing["returncode"] == 1
    assert f"no such file or directory: {missing['path']}" in missing["stderr"]
