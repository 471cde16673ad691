"""The systemd unit: it verifies, it is hardened, and the gateway speaks sd_notify as Type=notify needs."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from appliance.cli.support import EXIT_NEEDS_OPERATOR
from tests.conftest import catalogue_subset
from tests.support.appliance import start_appliance

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "appliance.service"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_unit_verifies(tmp_path: Path) -> None:
    # verify also checks that ExecStart exists: point it at this checkout's console script
    unit = tmp_path / "appliance.service"
    unit.write_text(UNIT.read_text().replace("/opt/appliance/current/.venv/bin/appliance",
                                             str(REPO / ".venv" / "bin" / "appliance")))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""


def test_the_unit_is_a_hardened_notify_service() -> None:
    settings = dict(line.split("=", 1) for line in UNIT.read_text().splitlines()
                    if "=" in line and not line.startswith("#"))
    assert settings["Type"] == "notify"
    assert settings["Restart"] == "on-failure"
    assert settings["User"] == "appliance"
    assert "appliance serve" in settings["ExecStart"]
    for key, value in {"ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
                       "NoNewPrivileges": "yes", "ReadWritePaths": "/var/lib/appliance"}.items():
        assert settings[key] == value
    assert "PrivateDevices" not in settings  # it would hide the GPUs
    assert settings["StateDirectoryMode"] == "0700" and settings["UMask"] == "0077"  # key hashes are private
    assert settings["RestartPreventExitStatus"] == str(EXIT_NEEDS_OPERATOR)  # a damaged DB: no restart loop


def test_the_gateway_notifies_ready_once_startup_models_are_loaded(tiny_catalogue: Path, tmp_path: Path) -> None:
    address = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(address)
        listener.settimeout(120)
        catalogue = catalogue_subset(tiny_catalogue, ["openai/text-embedding-3-small"], tmp_path / "models.toml")
        with start_appliance(catalogue, tmp_path / "state", wait=False, env={"NOTIFY_SOCKET": address}) as running:
            assert listener.recv(256) == b"READY=1"
            running.wait_ready(10)  # by READY=1 the startup models answer
            running.stop()
            assert listener.recv(256) == b"STOPPING=1"
