"""The tiny omni model on the real engine: vLLM (CPU build), started by the appliance's own launcher, takes text,
images and audio in one request, and counts exactly the prompt tokens engines/multimodal.py reserves for them.

Requests go straight to vLLM's OpenAI server on its Unix socket, as the gateway's relay sends them: images as
``data:`` URLs, audio as ``input_audio`` (base64 WAV at the model's 16 kHz).
"""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import subprocess
import time
import tomllib
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from appliance.catalogue import ModelEntry
from appliance.engines.multimodal import MultimodalFacts, read_facts
from appliance.supervisor.launch import engine_installed, worker_command, worker_environment

SLUG = "scailabs/poolnoodle-omni"
QUESTION = {"type": "text", "text": "What is in this?"}


def png(width: int, height: int) -> dict[str, Any]:
    pixels = np.random.default_rng(width * height).integers(0, 256, (height, width, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    url = "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()
    return {"type": "image_url", "image_url": {"url": url}}


def wav(seconds: float, rate: int = 16000) -> dict[str, Any]:
    t = np.arange(round(seconds * rate)) / rate
    out = io.BytesIO()
    with wave.open(out, "wb") as sound:
        sound.setnchannels(1)
        sound.setsampwidth(2)
        sound.setframerate(rate)
        sound.writeframes((0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2").tobytes())
    return {"type": "input_audio", "input_audio": {"data": base64.b64encode(out.getvalue()).decode(), "format": "wav"}}


@pytest.fixture(scope="module")
def entry(tiny_catalogue: Path) -> ModelEntry:
    table = next(t for t in tomllib.loads(tiny_catalogue.read_text())["model"] if t["slug"] == SLUG)
    return ModelEntry.model_validate({**table, "path": str((tiny_catalogue.parent / table["path"]).resolve())})


@pytest.fixture(scope="module")
def facts(entry: ModelEntry) -> MultimodalFacts:
    assert entry.path is not None
    found = read_facts(entry.path, entry.engine_options)
    assert found is not None
    return found


@pytest.fixture(scope="module")
def vllm(entry: ModelEntry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """vLLM serving the tiny omni model on a Unix socket, started as the supervisor starts it."""
    if not engine_installed(entry):
        pytest.skip("vLLM is not installed (scripts/setup builds .venv-vllm)")
    work = tmp_path_factory.mktemp("omni")
    socket, log = work / "vllm.sock", work / "vllm.log"
    with log.open("wb") as out:
        process = subprocess.Popen(worker_command(entry, socket), stdout=out, stderr=subprocess.STDOUT,
                                   env=worker_environment(entry), start_new_session=True)
    client = httpx.Client(transport=httpx.HTTPTransport(uds=str(socket)), base_url="http://vllm", timeout=120)
    try:
        deadline = time.monotonic() + 300
        while True:
            assert process.poll() is None, f"vLLM exited:\n{log.read_text(errors='replace')[-3000:]}"
            assert time.monotonic() < deadline, f"vLLM not healthy in 300 s:\n{log.read_text(errors='replace')[-3000:]}"
            try:
                if socket.exists() and client.get("/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        yield client
    finally:
        client.close()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)


def ask(vllm: httpx.Client, *parts: dict[str, Any], **extra: Any) -> httpx.Response:
    return vllm.post("/v1/chat/completions", json={
        "model": SLUG, "messages": [{"role": "user", "content": [*parts, QUESTION]}],
        "max_tokens": 4, "temperature": 0, **extra})


def prompt_tokens(vllm: httpx.Client, *parts: dict[str, Any]) -> int:
    response = ask(vllm, *parts)
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body["choices"][0]["message"]["content"], str)
    return body["usage"]["prompt_tokens"]


def test_text_alone_is_a_plain_chat(vllm: httpx.Client) -> None:
    assert prompt_tokens(vllm) > 5


@pytest.mark.parametrize("size", [(64, 64), (512, 512), (640, 480), (10, 10), (1500, 40)])
def test_a_png_data_url_costs_exactly_the_tokens_reserved_for_its_size(
        vllm: httpx.Client, facts: MultimodalFacts, size: tuple[int, int]) -> None:
    grown = prompt_tokens(vllm, png(*size)) - prompt_tokens(vllm)
    assert grown == facts.image_tokens(*size)


@pytest.mark.parametrize("seconds", [0.5, 1, 5])
def test_a_wav_costs_exactly_the_tokens_reserved_for_its_length(
        vllm: httpx.Client, facts: MultimodalFacts, seconds: float) -> None:
    grown = prompt_tokens(vllm, wav(seconds)) - prompt_tokens(vllm)
    assert grown == facts.audio_tokens(seconds)
    assert grown == pytest.approx(25 * seconds + 2, abs=1)


def test_an_image_and_a_sound_in_one_request_cost_the_sum_of_their_parts(
        vllm: httpx.Client, facts: MultimodalFacts) -> None:
    grown = prompt_tokens(vllm, png(512, 300), wav(2)) - prompt_tokens(vllm)
    assert grown == facts.image_tokens(512, 300) + facts.audio_tokens(2)


def test_the_longest_audio_the_facts_allow_passes_and_a_longer_one_is_refused(
        vllm: httpx.Client, facts: MultimodalFacts) -> None:
    longest = int(facts.max_audio_seconds or 0)
    assert prompt_tokens(vllm, wav(longest)) - prompt_tokens(vllm) == facts.audio_tokens(longest)
    response = ask(vllm, wav(longest + 1))
    assert response.status_code == 400 and "encoder cache" in response.json()["error"]["message"]


def test_a_forced_tool_call_works_with_an_image(vllm: httpx.Client) -> None:
    tool = {"type": "function", "function": {"name": "describe", "parameters": {
        "type": "object", "properties": {"colour": {"type": "string", "enum": ["red", "blue"]}},
        "required": ["colour"], "additionalProperties": False}}}
    response = ask(vllm, png(64, 64), tools=[tool], max_tokens=64,
                   tool_choice={"type": "function", "function": {"name": "describe"}})
    assert response.status_code == 200, response.text
    [call] = response.json()["choices"][0]["message"]["tool_calls"]
    assert call["function"]["name"] == "describe"
    assert json.loads(call["function"]["arguments"])["colour"] in ("red", "blue")


def test_more_images_than_the_catalogue_allows_are_refused(vllm: httpx.Client, facts: MultimodalFacts) -> None:
    assert facts.images_per_prompt == 4
    response = ask(vllm, *[png(28, 28)] * 5)
    assert response.status_code == 400 and "At most 4 image" in response.json()["error"]["message"]


def test_bytes_that_are_no_image_or_no_sound_are_refused(vllm: httpx.Client) -> None:
    junk = base64.b64encode(b"not a picture, not a sound" * 8).decode()
    response = ask(vllm, {"type": "image_url", "image_url": {"url": "data:image/png;base64," + junk}})
    assert response.status_code == 400 and "image" in response.json()["error"]["message"].lower()
    response = ask(vllm, {"type": "input_audio", "input_audio": {"data": junk, "format": "wav"}})
    assert response.status_code == 400 and "audio" in response.json()["error"]["message"].lower()


def test_vllm_fetches_no_media_url_itself(vllm: httpx.Client) -> None:
    """The launcher allows no media host: a URL is refused at once, never fetched (no connect to the port)."""
    started = time.monotonic()
    response = ask(vllm, {"type": "image_url", "image_url": {"url": "http://127.0.0.1:9/cat.png"}})
    assert response.status_code in (400, 500) and "allowed domains" in response.json()["error"]["message"]
    assert time.monotonic() - started < 2  # a fetch attempt waits for its 5 s timeout
