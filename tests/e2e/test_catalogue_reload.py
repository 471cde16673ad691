"""`appliance models reload` (SIGHUP): the running appliance picks up an edited catalogue without a restart."""

from __future__ import annotations

import threading
import time
import tomllib
from pathlib import Path

import httpx
import pytest
import tomli_w

from tests.conftest import catalogue_subset
from tests.support.appliance import RunningAppliance, cli, start_appliance
from tests.support.processes import alive, engine_process

pytestmark = pytest.mark.slow

EMBED, TTS = "openai/text-embedding-3-small", "openai/tts-1"


def slugs(client: httpx.Client) -> set[str]:
    return {item["slug"] for item in client.get("/v1/models").json()["data"]["items"]}


def reload(running: RunningAppliance, models: list[dict[str, object]]) -> None:
    running.catalogue.write_text(tomli_w.dumps({"model": models}))
    result = cli("models", "reload", "--config", str(running.catalogue), state_dir=running.state_dir)
    assert result.returncode == 0, result.stderr


def wait_for(condition, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


def test_models_appear_and_disappear_without_cutting_a_request_in_flight(tiny_catalogue: Path,
                                                                         tmp_path: Path) -> None:
    both = tomllib.loads(catalogue_subset(tiny_catalogue, [EMBED, TTS], tmp_path / "both.toml").read_text())["model"]
    embed, tts = (next(m for m in both if m["slug"] == slug) for slug in (EMBED, TTS))
    catalogue = tmp_path / "models.toml"
    catalogue.write_text(tomli_w.dumps({"model": [embed]}))
    with start_appliance(catalogue, tmp_path / "state") as running, running.client(running.create_key()) as client:
        assert slugs(client) == {EMBED}

        reload(running, [embed, tts])
        wait_for(lambda: slugs(client) == {EMBED, TTS})
        speech = client.post("/v1/inference/audio/synthesize", json={"model": TTS, "input": "Hello.", "voice": "alloy",
                                                                     "response_format": "wav"})
        assert speech.status_code == 200 and speech.content.startswith(b"RIFF")

        engine = engine_process(running.process.pid, "appliance.workers.embeddings")
        engine.suspend()  # holds the next embed request in flight while its model is removed
        answers: list[httpx.Response] = []
        caller = threading.Thread(target=lambda: answers.append(
            client.post("/v1/inference/embed", json={"model": EMBED, "input": "still served"})))
        caller.start()
        time.sleep(1.0)
        reload(running, [tts])
        wait_for(lambda: slugs(client) == {TTS})
        assert alive(engine)  # draining: the old worker waits for its request
        engine.resume()
        caller.join(30)
        assert answers and answers[0].status_code == 200, answers and answers[0].text
        gone = client.post("/v1/inference/embed", json={"model": EMBED, "input": "x"})
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "MODEL_NOT_FOUND"
        wait_for(lambda: not alive(engine))  # stopped once drained


def test_a_broken_catalogue_is_refused_and_the_models_stay(tiny_catalogue: Path, tmp_path: Path) -> None:
    catalogue = catalogue_subset(tiny_catalogue, [EMBED], tmp_path / "models.toml")
    with start_appliance(catalogue, tmp_path / "state") as running, running.client(running.create_key()) as client:
        good = catalogue.read_text()
        catalogue.write_text(good + '\n[[model]]\nslug = "x"\nmodality = "chat"\nengine = "remote"\n')
        result = cli("models", "reload", "--config", str(catalogue), state_dir=running.state_dir)
        assert result.returncode == 1 and "a remote model needs 'url'" in result.stderr
        assert slugs(client) == {EMBED}
        assert client.post("/v1/inference/embed", json={"model": EMBED, "input": "x"}).status_code == 200
