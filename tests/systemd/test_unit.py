"""The systemd unit: it verifies, it is hardened, and the gateway speaks sd_notify as Type=notify needs."""

from __future__ import annotations

import ctypes.util
import re
import shutil
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from appliance.cli.support import EXIT_NEEDS_OPERATOR
from tests.conftest import catalogue_subset
from tests.support.airgap import every_modality
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
    for key, value in {"SystemCallFilter": "@system-service", "ProtectProc": "invisible", "RemoveIPC": "yes",
                       "DevicePolicy": "closed", "DeviceAllow": "char-nvidia* rw", "IPAddressDeny": "any",
                       "IPAddressAllow": "localhost"}.items():
        assert settings[key] == value, key
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


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_units_exposure_is_at_most_two() -> None:
    # systemd's own score, 0 (locked down) to 10: 3.5 before SystemCallFilter, ProtectProc, RemoveIPC, DevicePolicy,
    # IPAddressDeny and PrivateMounts; what is left is the GPU's (devices, /proc/driver), the network and the JITs.
    result = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(UNIT)],
                            capture_output=True, text=True, timeout=60)
    exposure = re.search(r"Overall exposure level for appliance\.service: (\d+\.\d+)", result.stdout)
    assert exposure is not None, result.stdout + result.stderr
    assert float(exposure.group(1)) <= 2.0, result.stdout


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("systemd-analyze") is None or ctypes.util.find_library("seccomp") is None,
                    reason="needs systemd-analyze (to expand @system-service) and libseccomp")
def test_every_engine_serves_under_the_units_system_call_filter(tiny_catalogue: Path, tmp_path: Path) -> None:
    """The gateway and all six engines under the unit's filter, with any call outside it killing the caller."""
    python = tmp_path / "python-under-the-filter"
    python.write_text(f'#!/bin/sh\nexec {sys.executable} {REPO / "tests/support/syscall_filter.py"} {UNIT} -- '
                      f'{sys.executable} "$@"\n')
    python.chmod(0o755)
    every = [table["slug"] for table in tomllib.loads(tiny_catalogue.read_text())["model"]]
    catalogue = catalogue_subset(tiny_catalogue, every, tmp_path / "models.toml", load="startup")
    with start_appliance(catalogue, tmp_path / "state", python=str(python)) as running:
        assert (running.state_dir / "appliance.pid").is_file()
        with running.client(running.create_key(), timeout=300) as client:
            answers = every_modality(client, "1024x1024")
    assert {name: answer[0] for name, answer in answers.items()} == {
        "embedding": 200, "chat-vllm": 200, "chat-transformers": 200, "image": 200, "transcription": 200,
        "speech": 200}, answers
    assert "restarting in" not in running.log()  # no engine was killed by the filter on the way
