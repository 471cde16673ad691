"""One real appliance for the whole compatibility suite, and a client process cut off from the network.

The appliance serves the tiny vLLM chat model, the tiny embedding model, the
tiny SDXL pipeline (at 64x64) and tiny Whisper, and the OpenAI layer on a second
port at /v1 too (``openai_port``). Starting it costs about a minute (vLLM), so
every module of tests/compat shares it.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import shutil
import socket
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from appliance.serving.token_ids import encoding_path
from tests.support.appliance import RunningAppliance, free_port, start_appliance

CHAT = "scailabs/poolnoodle-omni"
EMBED = "openai/text-embedding-3-small"
IMAGES = "stability/sd-xl"
WHISPER = "openai/whisper-1"
SMALL = "64x64"

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city for some days.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "enum": ["Paris", "Oslo"]},
                           "days": {"type": "integer", "minimum": 1, "maximum": 7}},
            "required": ["city", "days"],
            "additionalProperties": False,
        },
    },
}


@dataclass
class Box:
    appliance: RunningAppliance
    key: str
    openai_port: int

    @property
    def oai(self) -> str:
        """The OpenAI layer on the main port: base_url for every OpenAI client."""
        return f"{self.appliance.url}/oai/v1"

    @property
    def v1(self) -> str:
        """The same layer at /v1 on its own port (openai_port), as the hosted OpenAI host serves it."""
        return f"http://127.0.0.1:{self.openai_port}/v1"


@pytest.fixture(scope="session")
def box(tiny_catalogue: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:
    state = tmp_path_factory.mktemp("compat-state")
    models = []
    for table in tomllib.loads(tiny_catalogue.read_text())["model"]:
        if table["slug"] in (CHAT, EMBED, IMAGES, WHISPER):
            table = {**table, "path": str((tiny_catalogue.parent / table["path"]).resolve()), "load": "startup"}
            if table["slug"] == IMAGES:
                table["engine_options"] = {**table["engine_options"], "sizes": [SMALL]}
            models.append(table)
    catalogue = state / "models.toml"
    catalogue.write_text(tomli_w.dumps({"model": models}))
    port = free_port()
    with start_appliance(catalogue, state, wait=False, env={"APPLIANCE_OPENAI_PORT": str(port)}) as running:
        running.wait_ready(timeout=600)
        yield Box(running, running.create_key(), port)


class NetworkCut(AssertionError):
    pass


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """This process reaches nothing but loopback: a name lookup or a connection elsewhere fails, and is listed.

    The clients run in the test's own process, so this is the air-gapped LAN as
    they see it (a library that phones home at import or at first use fails here).
    """
    attempts: list[str] = []
    connect, connect_ex, getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

    def loopback(host: Any) -> bool:
        if host in ("localhost", "") or not isinstance(host, str):
            return True
        with contextlib.suppress(ValueError):
            return ipaddress.ip_address(host.split("%")[0]).is_loopback
        return False

    def guarded(real: Any) -> Any:
        def call(sock: socket.socket, address: Any) -> Any:
            if sock.family in (socket.AF_INET, socket.AF_INET6) and not loopback(address[0]):
                attempts.append(f"connect {address}")
                raise NetworkCut(f"the network is cut: connect to {address}")
            return real(sock, address)
        return call

    def lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if not loopback(name):
            attempts.append(f"lookup {name}")
            raise socket.gaierror(socket.EAI_NONAME, f"the network is cut: no lookup of {name}")
        return getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded(connect))
    monkeypatch.setattr(socket.socket, "connect_ex", guarded(connect_ex))
    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    yield attempts
    assert not attempts, f"a client reached for the network: {attempts}"


# tiktoken keeps a downloaded encoding in TIKTOKEN_CACHE_DIR under the SHA-1 of its URL.
CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"


@pytest.fixture
def tiktoken_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """cl100k_base where tiktoken looks before it downloads, as docs/clients.md tells an offline client to put it."""
    cache = tmp_path / "tiktoken"
    cache.mkdir()
    shutil.copyfile(encoding_path("cl100k_base"), cache / hashlib.sha1(CL100K_URL.encode()).hexdigest())
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    return cache
