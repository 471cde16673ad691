"""A request's media against a model and the appliance's limits (serving/media_parts.py), without an engine.

The parts are real files decoded for real; the call carries real settings and a catalogue entry. What needs
the engine (the tokens it counts, streaming, the stores behind media URLs and files) is in
tests/e2e/test_chat_media.py.
"""

from __future__ import annotations

import asyncio
import base64
import io
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from PIL import Image

from appliance.catalogue import ModelEntry
from appliance.config import Settings
from appliance.serving.context import Call, Surface
from appliance.serving.errors import ApiError, ErrorCode, validation_error
from appliance.serving.media_parts import UNKNOWN_PART_TOKENS, MediaParts
from appliance.serving.media_sources import is_own_media
from tests.support.audio import audio_file


def png(width: int, height: int) -> str:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (1, 2, 3)).save(out, "PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def wav(seconds: float) -> str:
    return base64.b64encode(audio_file(seconds)).decode()


def call_with(tmp_path: Path, **settings: Any) -> Call:
    runtime = SimpleNamespace(settings=Settings(state_dir=tmp_path, **settings))
    return Call(runtime, SimpleNamespace(id="key"), Surface.SCAIGRID, lambda: "http://box.lan:8080")  # type: ignore


def remote(**changes: Any) -> ModelEntry:
    return ModelEntry.model_validate({"slug": "far/omni", "modality": "chat", "engine": "remote",
                                      "url": ["http://gpu-node:8000/v1"], "capabilities": ["vision", "audio_input"],
                                      **changes})


def refused(coroutine: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        asyncio.run(coroutine)
    return caught.value


def test_a_model_of_unknown_costs_gets_its_image_at_its_own_size_and_reserves_its_window(tmp_path: Path) -> None:
    parts = MediaParts(call_with(tmp_path), remote(context_window=8192))
    made = asyncio.run(parts.image(png(1500, 900), "messages[0].content[1].image_url.url"))
    sent = base64.b64decode(made["image_url"]["url"].split(",", 1)[1])
    assert Image.open(io.BytesIO(sent)).size == (1500, 900)
    assert parts.tokens == 8192
    asyncio.run(parts.audio(wav(1.0), "wav", "messages[0].content[2].input_audio.data"))
    assert parts.tokens == 2 * 8192  # the request's bound is capped at the window by the chat service


def test_without_a_window_a_part_of_unknown_cost_reserves_the_default(tmp_path: Path) -> None:
    parts = MediaParts(call_with(tmp_path), remote())
    asyncio.run(parts.image(png(64, 64), "f"))
    assert parts.tokens == UNKNOWN_PART_TOKENS


def test_a_part_the_model_cannot_take_names_its_capabilities(tmp_path: Path) -> None:
    parts = MediaParts(call_with(tmp_path), remote(capabilities=["tools"]))
    error = refused(parts.audio(wav(1.0), "wav", "messages[3].content[0].input_audio.data"))
    assert error.details == [{"field": "messages[3].content[0].input_audio.data",
                              "message": "model 'far/omni' takes no sounds (its capabilities: tools)"}]
    error = refused(MediaParts(call_with(tmp_path), remote(capabilities=[])).image(png(8, 8), "f"))
    assert "takes no images (its capabilities: none: text only)" in error.message


def test_the_models_per_prompt_limit_and_the_appliances_count_are_both_kept(tmp_path: Path) -> None:
    limited = MediaParts(call_with(tmp_path), remote(engine_options={"limit_mm_per_prompt": {"image": 1}}))
    asyncio.run(limited.image(png(8, 8), "first"))
    assert refused(limited.image(png(8, 8), "second")).details == [
        {"field": "second", "message": "model 'far/omni' takes at most 1 images in one request"}]
    counted = MediaParts(call_with(tmp_path, max_media_parts=2), remote())
    asyncio.run(counted.image(png(8, 8), "a"))
    asyncio.run(counted.audio(wav(0.5), "wav", "b"))
    assert "at most 2 images and sounds (the max_media_parts setting)" in refused(counted.image(png(8, 8), "c")).message


def test_the_requests_audio_seconds_are_counted_across_parts(tmp_path: Path) -> None:
    parts = MediaParts(call_with(tmp_path, max_audio_seconds=3), remote())
    asyncio.run(parts.audio(wav(2.0), "wav", "first"))
    error = refused(parts.audio(wav(2.0), "wav", "second"))
    assert error.details and error.details[0]["field"] == "second"
    assert "past the 3 s of audio one request may carry (the max_audio_seconds setting)" in error.message


def test_the_byte_and_pixel_limits_are_413s(tmp_path: Path) -> None:
    asyncio.run(MediaParts(call_with(tmp_path), remote()).audio(wav(1.0), "wav", "f"))  # made under larger limits
    parts = MediaParts(call_with(tmp_path, max_media_part_bytes=1000, max_image_pixels=10_000), remote())
    too_many_bytes = refused(parts.audio(wav(1.0), "wav", "f"))
    assert too_many_bytes.code == ErrorCode.PAYLOAD_TOO_LARGE and too_many_bytes.status_code == 413
    parts = MediaParts(call_with(tmp_path, max_image_pixels=10_000), remote())
    too_many_pixels = refused(parts.image(png(200, 100), "g"))
    assert too_many_pixels.code == ErrorCode.PAYLOAD_TOO_LARGE and too_many_pixels.details == [
        {"field": "g", "message": "is 200×100 pixels, more than this appliance takes (10000 pixels)"}]


def test_an_engines_refusal_of_a_medium_is_given_the_first_part_of_that_medium(tmp_path: Path) -> None:
    parts = MediaParts(call_with(tmp_path), remote())
    asyncio.run(parts.image(png(8, 8), "messages[1].content[2].image_url.url"))
    engine = ApiError(ErrorCode.VALIDATION_ERROR, "At most 4 image(s) may be provided in one prompt.",
                      details=[{"field": "image", "message": "At most 4 image(s) may be provided in one prompt."}])
    named = parts.name_refusal(engine)
    assert named.details == [{"field": "messages[1].content[2].image_url.url",
                              "message": "At most 4 image(s) may be provided in one prompt."}]
    other = validation_error("messages", "too long")
    assert parts.name_refusal(other) is other


@pytest.mark.parametrize(("url", "ours"), [
    ("http://box.lan:8080/v1/media/tok_x", True),
    ("/v1/media/tok_x", True),
    ("https://box.example/v1/media/tok_x", True),  # public_base_url's host
    ("http://box.lan:9090/v1/media/tok_x", False),  # another port: another server
    ("http://elsewhere/v1/media/tok_x", False),
    ("http://box.lan:8080/v1/other", False),
])
def test_own_media_urls_are_on_a_host_this_appliance_answers_on(tmp_path: Path, url: str, ours: bool) -> None:
    assert is_own_media(call_with(tmp_path, public_base_url="https://box.example"), url) is ours


def test_the_same_bytes_again_reuse_the_part_made_and_are_checked_again(tmp_path: Path) -> None:
    url = png(300, 200)
    first = asyncio.run(MediaParts(call_with(tmp_path), remote()).image(url, "a"))
    again = asyncio.run(MediaParts(call_with(tmp_path), remote()).image(url, "b"))
    assert again["image_url"]["url"] is first["image_url"]["url"]  # made once
    asyncio.run(MediaParts(call_with(tmp_path), remote()).audio(wav(2.0), "wav", "x"))
    stricter = MediaParts(call_with(tmp_path, max_audio_seconds=1), remote())
    assert "past the 1 s of audio" in refused(stricter.audio(wav(2.0), "wav", "y")).message
    smaller = MediaParts(call_with(tmp_path, max_image_pixels=100), remote())
    assert refused(smaller.image(url, "c")).code == ErrorCode.PAYLOAD_TOO_LARGE  # made for other limits: not reused
