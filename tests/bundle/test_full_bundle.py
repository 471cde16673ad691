"""The whole way, as a new user goes it: a full bundle (engines, vLLM's environment, every tiny model) made here,
installed with no network, and the installed appliance answering every modality inside a loopback-only
namespace with nothing leaving it.

Slow (gigabytes of wheels, two environments built): opt in with APPLIANCE_FULL_BUNDLE_TEST=1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bundle.test_install import install
from tests.conftest import REPO
from tests.support.netns import needs_namespace, offline

pytestmark = [
    needs_namespace,
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("APPLIANCE_FULL_BUNDLE_TEST") != "1",
                       reason="the full bundle takes many minutes and gigabytes; set APPLIANCE_FULL_BUNDLE_TEST=1"),
]


def test_a_full_bundle_installs_offline_and_serves_every_modality(tiny_catalogue: Path, signing_key: Path,
                                                                  tmp_path: Path) -> None:
    bundle = tmp_path / "full.tar"
    made = subprocess.run([sys.executable, "-m", "appliance.cli", "bundle", "create", str(bundle), "--config",
                           str(tiny_catalogue), "--sign", str(signing_key)], capture_output=True, text=True,
                          timeout=3600)
    assert made.returncode == 0, made.stderr[-4000:]
    root = tmp_path / "root"
    installed = install(bundle, "--root", root, "--pubkey", f"{signing_key}.pub")
    assert installed.returncode == 0, installed.stderr[-4000:]
    assert "partial" not in installed.stderr and "model(s), 0 with problems" in installed.stdout
    current = root / "opt/appliance/current"

    report = tmp_path / "report.json"
    env = {**os.environ, "APPLIANCE_VLLM_PYTHON": str(current / ".venv-vllm/bin/python")}
    served = subprocess.run(offline([sys.executable, "-m", "tests.support.airgap", "--python",
                                     str(current / ".venv/bin/python"), "--catalogue",
                                     str(root / "etc/appliance/models.toml"), "--state", str(tmp_path / "state"),
                                     "--report", str(report), "--image-size", "1024x1024"]),
                            cwd=REPO, capture_output=True, text=True, timeout=1800, env=env)
    assert served.returncode == 0, served.stderr[-4000:]
    result = json.loads(report.read_text())
    assert {name: answer[0] for name, answer in result["responses"].items()} == {
        "embedding": 200, "chat-vllm": 200, "chat-transformers": 200, "image": 200, "transcription": 200,
        "speech": 200}, result["responses"]
    assert result["foreign_sockets"] == [] and result["trap_hits"] == [], result
    ours = [p for p in result["processes"] if " -m appliance." in p]  # the gateway and its workers
    assert ours and all(p.startswith(str(root)) for p in ours), ours  # all run from the installed version
