"""The installed box listens on the LAN through systemd: two socket units hand 443 and 80 to the service, which
stays the unprivileged user `appliance` with no capability, reads its certificate, and never sees the CA key."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SYSTEMD = REPO / "systemd"


def values(unit: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            name, value = line.split("=", 1)
            found.setdefault(name, []).append(value)
    return found


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_service_and_its_sockets_verify_together(tmp_path: Path) -> None:
    for unit in ("appliance.service", "appliance-https.socket", "appliance-http.socket"):
        text = (SYSTEMD / unit).read_text()
        (tmp_path / unit).write_text(text.replace("/opt/appliance/current/.venv/bin/appliance",
                                                  str(REPO / ".venv" / "bin" / "appliance")))
    result = subprocess.run(["systemd-analyze", "verify", *(str(tmp_path / u) for u in (
        "appliance.service", "appliance-https.socket", "appliance-http.socket"))], capture_output=True, text=True,
        timeout=60)
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


def test_443_and_80_come_from_systemd_named_as_serve_expects() -> None:
    https, http = values(SYSTEMD / "appliance-https.socket"), values(SYSTEMD / "appliance-http.socket")
    assert https["ListenStream"] == ["443"] and https["FileDescriptorName"] == ["https"]
    assert http["ListenStream"] == ["80"] and http["FileDescriptorName"] == ["http"]
    assert https["Service"] == http["Service"] == ["appliance.service"]
    assert https["WantedBy"] == http["WantedBy"] == ["sockets.target"]


def test_the_service_holds_no_privilege_and_never_sees_the_ca_key() -> None:
    service = values(SYSTEMD / "appliance.service")
    assert service["User"] == ["appliance"] and service["NoNewPrivileges"] == ["yes"]
    assert service["CapabilityBoundingSet"] == [""] and service["AmbientCapabilities"] == [""]
    assert service["Sockets"] == ["appliance-https.socket appliance-http.socket"]
    environment = " ".join(service["Environment"])
    assert "APPLIANCE_TLS_CERT_FILE=/etc/appliance/tls/cert.pem" in environment
    assert "APPLIANCE_TLS_KEY_FILE=/etc/appliance/tls/key.pem" in environment
    assert service["InaccessiblePaths"] == ["-/etc/appliance/tls/ca"]
    assert service["ExecReload"] == ["/bin/kill -HUP $MAINPID"]  # the catalogue and the certificate, one signal
