"""Done when: a fresh scripts/install, in a network namespace with a LAN address, serves HTTPS on that address to
curl, the Python SDK, the openai npm package and Chromium in another namespace, with only the CA added.

The box: scripts/install from a bundle (tests/bundle's, gateway only) makes the CA and certificate for the box's
host name and LAN address; its appliance then runs as its units say, socket-activated on 443 and 80
(systemd-socket-activate, from systemd's package, stands in for systemd). Its models are served by a second,
plain-HTTP appliance on the box's loopback with the engines (engine = "remote"): the bundle carries no engines.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import tomli_w

from appliance.tls.pem import load_certificates, subject_names
from tests.bundle.conftest import bundle_catalogue, gateway_bundle, signing_key  # noqa: F401  (fixtures)
from tests.conftest import REPO
from tests.support.browser import why_no_browser
from tests.support.lan import BOX_ADDRESS, Lan, lan
from tests.support.netns import why_no_namespace
from tests.tls.conftest import CHAT, EMBED, tls_catalogue

pytestmark = [pytest.mark.skipif(why_no_namespace() is not None, reason=why_no_namespace() or ""),
              pytest.mark.skipif(shutil.which("systemd-socket-activate") is None,
                                 reason="needs systemd-socket-activate (Debian's systemd package)")]

BACKEND_PORT = 8000
NODE_DIR = REPO / "tests" / "support" / "node"


@dataclass
class Box:
    lan: Lan
    root: Path
    ca: Path  # the CA, carried to the client out of band (as an operator copies it from the box)
    key: str  # an API key of the installed appliance
    log: Path
    install_log: str

    def client(self, *command: str, env: dict[str, str] | None = None,
               timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.lan.in_client(command), capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})})


def unit_values(unit: Path) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            name, value = line.split("=", 1)
            values.setdefault(name, []).append(value)
    return values


def rooted(text: str, root: Path) -> str:
    return re.sub(r"(?<![\w/])/(opt/appliance|etc/appliance|var/lib/appliance)", f"{root}/\\1", text)


def wait_for(predicate: object, what: str, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what} within {timeout} s:\n{log.read_text(errors='replace')[-4000:]}"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def box(gateway_bundle: Path, signing_key: Path, tiny_catalogue: Path,  # noqa: F811
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:
    work = tmp_path_factory.mktemp("lan")
    root = work / "root"
    processes: list[subprocess.Popen[bytes]] = []
    with lan() as net:
        try:
            # the engines, on the box's loopback (plain HTTP: nothing leaves the box)
            backend_state = work / "backend"
            backend_state.mkdir()
            backend_log = (work / "backend.log").open("wb")
            processes.append(subprocess.Popen(net.in_box([
                sys.executable, "-m", "appliance.cli", "serve", "--config",
                str(tls_catalogue(tiny_catalogue, work / "engines.toml")), "--state-dir", str(backend_state),
                "--host", "127.0.0.1", "--port", str(BACKEND_PORT)]), stdout=backend_log, stderr=subprocess.STDOUT))
            backend_key = _cli(sys.executable, backend_state, "keys", "create", "front")

            installed = subprocess.run(net.in_box([str(REPO / "scripts" / "install"), str(gateway_bundle),
                                                   "--root", str(root), "--pubkey", f"{signing_key}.pub"]),
                                       capture_output=True, text=True, timeout=900)
            assert installed.returncode == 0, installed.stderr[-4000:]
            # the operator points the catalogue at the engines
            catalogue = root / "etc/appliance/models.toml"
            catalogue.write_text(tomli_w.dumps({"model": [
                {"slug": slug, "modality": modality, "engine": "remote", "api_key_env": "ENGINES_KEY",
                 "url": [f"http://127.0.0.1:{BACKEND_PORT}/oai/v1"]}
                for slug, modality in ((EMBED, "embedding"), (CHAT, "chat"))]}))

            service = unit_values(root / "etc/systemd/system/appliance.service")
            sockets = [unit_values(root / f"etc/systemd/system/appliance-{kind}.socket") for kind in ("https", "http")]
            environment = [f"-E{rooted(pair, root)}" for line in service["Environment"] for pair in line.split()]
            listen = [f"-l{s['ListenStream'][0]}" for s in sockets]
            names = ":".join(s["FileDescriptorName"][0] for s in sockets)
            log = work / "appliance.log"
            python = root / "opt/appliance/current/.venv/bin/python"
            processes.append(subprocess.Popen(net.in_box([
                "systemd-socket-activate", *listen, f"--fdname={names}", *environment,
                f"-EPATH={os.environ['PATH']}", f"-EENGINES_KEY={backend_key}", f"-EHOME={work}",
                *rooted(service["ExecStart"][0], root).split()]), stdout=log.open("wb"), stderr=subprocess.STDOUT))
            key = _cli(str(python), root / "var/lib/appliance", "keys", "create", "lan-user", "--permission",
                       "models:list", "--permission", "models:use", "--permission", "admin:access")
            ca = work / "client-ca.pem"
            shutil.copyfile(root / "etc/appliance/tls/ca.pem", ca)
            running = Box(net, root, ca, key, log, installed.stderr)

            def ready() -> bool:  # the first connection is what starts it: socket activation
                answer = running.client("curl", "-s", "--max-time", "5", "--cacert", str(ca),
                                        f"https://{BOX_ADDRESS}/ready")
                return '"status":"ready"' in answer.stdout

            wait_for(ready, "the installed appliance is not ready on the LAN", 300, log)
            yield running
        finally:
            for process in reversed(processes):
                process.terminate()
                try:
                    process.wait(60)
                except subprocess.TimeoutExpired:
                    process.kill()


def _cli(python: str, state: Path, *args: str) -> str:
    result = subprocess.run([python, "-m", "appliance.cli", *args], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "APPLIANCE_STATE_DIR": str(state)})
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_install_made_a_ca_apart_and_a_certificate_for_the_boxs_name_and_lan_address(box: Box) -> None:
    tls = box.root / "etc/appliance/tls"
    assert "install: tls: created the CA in" in box.install_log
    assert oct((tls / "ca").stat().st_mode & 0o777) == "0o700" and oct((tls / "ca/ca.key").stat().st_mode & 0o777) \
        == "0o600"
    dns, ips = subject_names(load_certificates(tls / "cert.pem")[0])
    assert box.lan.box_name in dns and BOX_ADDRESS in ips and "localhost" in dns
    service = (box.root / "etc/systemd/system/appliance.service").read_text()
    assert "InaccessiblePaths=-/etc/appliance/tls/ca" in service  # the service never sees the CA key
    # The unit lets in the box's LAN (its address's network) and nothing else beyond localhost.
    lan = (box.root / "etc/systemd/system/appliance.service.d/10-lan.conf").read_text()
    allowed = [line.split("=", 1)[1].split() for line in lan.splitlines() if line.startswith("IPAddressAllow=")]
    assert allowed == [["198.51.100.0/24"]] and "IPAddressDeny=any" in service


def test_curl_on_the_lan_by_address_and_by_name_with_the_ca_alone(box: Box) -> None:
    for host in (BOX_ADDRESS, box.lan.box_name):
        answer = box.client("curl", "-sS", "--max-time", "60", "--cacert", str(box.ca), f"https://{host}/v1/models",
                            "-H", f"Authorization: Bearer {box.key}")
        assert answer.returncode == 0, answer.stderr
        assert {m["slug"] for m in json.loads(answer.stdout)["data"]["items"]} == {EMBED, CHAT}
    served_ca = box.client("curl", "-sS", "--cacert", str(box.ca), f"https://{box.lan.box_name}/ca.pem")
    assert served_ca.stdout == box.ca.read_text()
    redirect = box.client("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                          f"http://{box.lan.box_name}/console/")
    assert redirect.stdout == f"308 https://{box.lan.box_name}/console/"
    plain = box.client("curl", "-sS", "--max-time", "10", f"http://{BOX_ADDRESS}:443/health")
    assert "This port speaks HTTPS" in plain.stdout


def test_the_python_sdk_on_the_lan_with_ssl_cert_file(box: Box) -> None:
    script = ("import openai, sys; c = openai.OpenAI(base_url=sys.argv[1], api_key=sys.argv[2], max_retries=0)\n"
              f"e = c.embeddings.create(model='{EMBED}', input=['on the LAN'])\n"
              f"s = list(c.chat.completions.create(model='{CHAT}', messages=[{{'role': 'user', 'content': 'Hi'}}],"
              " max_tokens=8, stream=True))\n"
              "print(len(e.data[0].embedding), s[-1].choices[0].finish_reason)")
    answer = box.client(sys.executable, "-c", script, f"https://{box.lan.box_name}/oai/v1", box.key,
                        env={"SSL_CERT_FILE": str(box.ca)})
    assert answer.returncode == 0, answer.stderr[-3000:]
    assert answer.stdout.split() == ["1536", "length"]


@pytest.mark.skipif(shutil.which("node") is None or not (NODE_DIR / "node_modules" / "openai").is_dir(),
                    reason="needs node and `npm ci` in tests/support/node (scripts/test runs it)")
def test_the_openai_npm_package_on_the_lan_with_node_extra_ca_certs(box: Box) -> None:
    answer = box.client("node", str(NODE_DIR / "client.mjs"), f"https://{box.lan.box_name}/oai/v1", box.key, EMBED,
                        CHAT, env={"NODE_EXTRA_CA_CERTS": str(box.ca)})
    result = json.loads(answer.stdout.strip().splitlines()[-1])
    assert "error" not in result, result
    assert result["dimensions"] == 1536 and result["chat"]["finish"] == "length"


@pytest.mark.skipif(why_no_browser() is not None or shutil.which("certutil") is None,
                    reason=why_no_browser() or "needs certutil (libnss3-tools)")
def test_chromium_on_the_lan_opens_the_console_from_plain_http(box: Box, tmp_path: Path) -> None:
    answer = box.client(sys.executable, "-m", "tests.support.lan_console", f"http://{box.lan.box_name}/console/",
                        box.key, str(box.ca), str(tmp_path / "home"), str(tmp_path / "console.png"),
                        env={"PYTHONPATH": str(REPO)})
    assert answer.returncode == 0, answer.stderr[-3000:]
    seen = json.loads(answer.stdout.strip().splitlines()[-1])
    assert seen["status"] == 200 and seen["url"] == f"https://{box.lan.box_name}/console/"
    assert seen["models"] == 2 and seen["ca_link"] and not seen["errors"], seen
