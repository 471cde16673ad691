"""Images and sounds in chat, end to end: the real gateway, the tiny omni model on vLLM (CPU build), real decoders.

One appliance for the module: the omni model, the tiny text-only chat model (only ever refused: it never
loads) and the tiny SDXL model (whose media URL a chat then names). Its media limits are set low enough that
small test files cross them. A local HTTP server stands for a LAN host: ``localhost`` is on the appliance's
``media_url_allow``, ``127.0.0.1`` (the same server) is not, so every request that reaches it is seen.

Each bad input is checked on both surfaces: the ScaiGrid envelope (422 VALIDATION_ERROR or 413
PAYLOAD_TOO_LARGE with ``details[0].field``) and OpenAI's shape (``error.param``).
"""

from __future__ import annotations

import base64
import json
import threading
import time
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import tomli_w

from appliance.config import Settings
from appliance.db.database import open_database
from appliance.engines.multimodal import MultimodalFacts
from appliance.media.store import MediaStore
from tests.batch.helpers import jsonl
from tests.conftest import catalogue_subset
from tests.support.appliance import RunningAppliance, start_appliance
from tests.support.audio import audio_file
from tests.support.browser import browser, needs_browser, watched_page
from tests.support.pictures import data_url, picture

OMNI = "scailabs/poolnoodle-omni"
TEXT_ONLY = "scailabs/tiny-chat"
IMAGES = "stability/sd-xl"
PART_BYTES = 6 * 1024 * 1024  # the module's max_media_part_bytes
PIXELS = 4_000_000  # the module's max_image_pixels
QUESTION = {"type": "text", "text": "What is in this?"}
SHOTS = Path(__file__).resolve().parents[2] / "build" / "console-screenshots"


# --- the files a client sends -------------------------------------------------


def image_part(url: str, **extra: Any) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url, **extra}}


def audio_part(data: bytes, audio_format: str = "wav") -> dict[str, Any]:
    return {"type": "input_audio", "input_audio": {"data": base64.b64encode(data).decode(), "format": audio_format}}


def chat(*parts: dict[str, Any], model: str = OMNI, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "system", "content": "Be brief."},
                                         {"role": "user", "content": [QUESTION, *parts]}],
            "max_tokens": 4, "temperature": 0, **extra}


# --- a LAN host, seen from the appliance ------------------------------------------


class LanHost:
    """An HTTP server on 127.0.0.1 that records every request (its Host header and path)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.png = picture(200, 100, seed=7)
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                host.seen.append((self.headers.get("Host", ""), self.path))
                if self.path == "/cat.png":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.send_header("Content-Length", str(len(host.png)))
                    self.end_headers()
                    self.wfile.write(host.png)
                elif self.path == "/elsewhere":  # an allowed host sending the appliance on to one that is not
                    self.send_response(302)
                    self.send_header("Location", f"http://127.0.0.1:{host.port}/cat.png")
                    self.end_headers()
                else:
                    self.send_error(404)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]

    def __enter__(self) -> LanHost:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- the appliance ------------------------------------------------------------------


@pytest.fixture(scope="module")
def lan() -> Iterator[LanHost]:
    with LanHost() as host:
        yield host


@pytest.fixture(scope="module")
def appliance(tiny_catalogue: Path, tmp_path_factory: pytest.TempPathFactory,
              lan: LanHost) -> Iterator[RunningAppliance]:
    state = tmp_path_factory.mktemp("chat-media")
    catalogue = catalogue_subset(tiny_catalogue, [OMNI, TEXT_ONLY, IMAGES], state / "models.toml")
    data = tomllib.loads(catalogue.read_text())
    for table in data["model"]:
        table["load"] = "startup" if table["slug"] == OMNI else "on-demand"
    catalogue.write_text(tomli_w.dumps(data))
    env = {"APPLIANCE_MEDIA_URL_ALLOW": '["localhost"]', "APPLIANCE_MAX_MEDIA_PART_BYTES": str(PART_BYTES),
           "APPLIANCE_MAX_IMAGE_PIXELS": str(PIXELS), "APPLIANCE_REQUEST_WAIT_S": "240"}
    with start_appliance(catalogue, state, env=env) as running:
        yield running


@pytest.fixture(scope="module")
def key(appliance: RunningAppliance) -> str:
    return appliance.create_key("--permission", "models:use", "--permission", "models:list")


@pytest.fixture(scope="module")
def http(appliance: RunningAppliance, key: str) -> Iterator[httpx.Client]:
    with appliance.client(key, timeout=240) as client:
        yield client


@pytest.fixture(scope="module")
def sdk(appliance: RunningAppliance, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{appliance.url}/oai/v1", api_key=key, max_retries=0, timeout=240)


@pytest.fixture(scope="module")
def text_tokens(http: httpx.Client) -> int:
    """The prompt tokens of the question alone: what every part's cost is measured from."""
    return prompt_tokens(http)


def answer(http: httpx.Client, *parts: dict[str, Any], path: str = "/v1/inference/chat", **extra: Any) -> Any:
    response = http.post(path, json=chat(*parts, **extra))
    assert response.status_code == 200, response.text
    body = response.json()
    return body["data"] if path.startswith("/v1/") else body


def prompt_tokens(http: httpx.Client, *parts: dict[str, Any], path: str = "/v1/inference/chat") -> int:
    body = answer(http, *parts, path=path)
    assert isinstance(body["choices"][0]["message"]["content"], str)
    return int(body["usage"]["prompt_tokens"])


# --- what a model takes --------------------------------------------------------------


def test_models_show_their_capabilities_on_both_surfaces(http: httpx.Client) -> None:
    listed = {item["slug"]: item for item in http.get("/v1/models").json()["data"]["items"]}
    assert listed[OMNI]["capabilities"] == ["vision", "audio_input", "tools"]
    assert listed[TEXT_ONLY]["capabilities"] == ["tools"] and listed[IMAGES]["capabilities"] == []
    assert http.get(f"/v1/models/{OMNI.replace('/', '%2F')}").json()["data"]["capabilities"] == [
        "vision", "audio_input", "tools"]
    openai_listed = {item["id"]: item for item in http.get("/oai/v1/models").json()["data"]}
    assert openai_listed[OMNI]["capabilities"] == ["vision", "audio_input", "tools"]
    assert http.get(f"/oai/v1/models/{OMNI}").json()["capabilities"] == ["vision", "audio_input", "tools"]


@pytest.mark.parametrize("path", ["/v1/inference/chat", "/oai/v1/chat/completions"])
@pytest.mark.parametrize(("fmt", "media_type", "size"), [("PNG", "image/png", (512, 512)),
                                                         ("JPEG", "image/jpeg", (640, 480)),
                                                         ("PNG", "image/png", (2400, 1500))])
def test_an_image_as_a_data_url_costs_the_tokens_its_size_reserves(
        http: httpx.Client, facts: MultimodalFacts, text_tokens: int, path: str, fmt: str, media_type: str,
        size: tuple[int, int]) -> None:
    url = data_url(picture(*size, fmt=fmt, seed=len(path)), media_type)
    assert prompt_tokens(http, image_part(url), path=path) - text_tokens == facts.image_tokens(*size)


def test_detail_low_sends_a_smaller_image(http: httpx.Client, facts: MultimodalFacts, text_tokens: int) -> None:
    url = data_url(picture(1024, 1024, seed=3))
    high = prompt_tokens(http, image_part(url, detail="high")) - text_tokens
    low = prompt_tokens(http, image_part(url, detail="low")) - text_tokens
    assert high == facts.image_tokens(1024, 1024) and low == 18 * 18 + 2 < high  # 504×504: 18×18 tiles


@pytest.mark.parametrize("kind", ["wav", "mp3"])
def test_a_sound_as_input_audio_costs_the_tokens_its_length_reserves(
        http: httpx.Client, facts: MultimodalFacts, text_tokens: int, kind: str) -> None:
    sound = audio_file(3.0, kind, rate=44100)  # not the model's 16 kHz: the gateway resamples
    grown = prompt_tokens(http, audio_part(sound, kind)) - text_tokens
    assert grown == pytest.approx(facts.audio_tokens(3.0), abs=2)  # an MP3 carries a frame of padding


def test_an_image_and_a_sound_in_one_message(http: httpx.Client, facts: MultimodalFacts, text_tokens: int) -> None:
    grown = prompt_tokens(http, image_part(data_url(picture(300, 200, seed=5))), audio_part(audio_file(1.0))) \
        - text_tokens
    assert grown == facts.image_tokens(300, 200) + facts.audio_tokens(1.0)


def test_an_image_made_by_the_boxs_own_image_model_is_passed_by_its_media_url(
        http: httpx.Client, lan: LanHost, facts: MultimodalFacts, text_tokens: int) -> None:
    made = http.post("/v1/inference/images/generate", json={"model": IMAGES, "prompt": "a red square",
                                                            "size": "1024x1024"})
    assert made.status_code == 200, made.text
    url = made.json()["data"]["data"][0]["url"]
    assert "/v1/media/tok_" in url
    seen = len(lan.seen)
    assert prompt_tokens(http, image_part(url)) - text_tokens == facts.image_tokens(1024, 1024)
    assert prompt_tokens(http, image_part(url[url.index("/v1/media/"):])) - text_tokens == \
        facts.image_tokens(1024, 1024)  # the bare path too
    assert len(lan.seen) == seen


def test_an_uploaded_file_by_its_scaigrid_url_and_as_a_file_part(
        sdk: openai.OpenAI, http: httpx.Client, facts: MultimodalFacts, text_tokens: int) -> None:
    uploaded = sdk.files.create(file=("photo.jpg", picture(800, 600, "JPEG", seed=9)), purpose="vision")
    assert uploaded.purpose == "vision" and uploaded.id.startswith("file-")
    cost = facts.image_tokens(800, 600)
    assert prompt_tokens(http, image_part(f"scaigrid://file/{uploaded.id}")) - text_tokens == cost
    assert prompt_tokens(http, {"type": "file", "file": {"file_id": uploaded.id}}) - text_tokens == cost
    sound = sdk.files.create(file=("hello.mp3", audio_file(2.0, "mp3")), purpose="user_data")
    grown = prompt_tokens(http, {"type": "file", "file": {"file_id": sound.id}}) - text_tokens
    assert grown == pytest.approx(facts.audio_tokens(2.0), abs=2)
    assert sdk.files.content(uploaded.id).response.headers["content-type"] == "image/jpeg"


def test_a_file_part_with_inline_data(http: httpx.Client, facts: MultimodalFacts, text_tokens: int) -> None:
    inline = {"type": "file", "file": {"filename": "x.png", "file_data": data_url(picture(100, 100, seed=2))}}
    assert prompt_tokens(http, inline) - text_tokens == facts.image_tokens(100, 100)


def test_an_image_on_an_allowed_host_is_fetched_by_the_gateway(
        http: httpx.Client, lan: LanHost, facts: MultimodalFacts, text_tokens: int) -> None:
    seen = len(lan.seen)
    grown = prompt_tokens(http, image_part(f"http://localhost:{lan.port}/cat.png")) - text_tokens
    assert grown == facts.image_tokens(200, 100)
    assert lan.seen[seen:] == [(f"localhost:{lan.port}", "/cat.png")]  # once, by the gateway; vLLM fetched nothing


def test_a_streamed_chat_with_an_image(http: httpx.Client, facts: MultimodalFacts, text_tokens: int) -> None:
    body = chat(image_part(data_url(picture(400, 300, seed=4))), stream=True, stream_options={"include_usage": True},
                max_tokens=8)
    with http.stream("POST", "/v1/inference/chat", json=body) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        frames = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert frames[-1] == "[DONE]"
    chunks = [json.loads(frame) for frame in frames[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    usage = chunks[-1]["usage"]
    assert usage["prompt_tokens"] - text_tokens == facts.image_tokens(400, 300)


def test_a_forced_tool_call_about_an_image(http: httpx.Client) -> None:
    tool = {"type": "function", "function": {"name": "describe", "parameters": {
        "type": "object", "properties": {"colour": {"type": "string", "enum": ["red", "blue"]}},
        "required": ["colour"], "additionalProperties": False}}}
    body = answer(http, image_part(data_url(picture(64, 64, seed=1))), tools=[tool], max_tokens=64,
                  tool_choice={"type": "function", "function": {"name": "describe"}})
    [call] = body["choices"][0]["message"]["tool_calls"]
    assert call["function"]["name"] == "describe"
    assert json.loads(call["function"]["arguments"])["colour"] in ("red", "blue")


# --- clients as they ship -------------------------------------------------------------


def test_the_openai_sdk_sends_an_image_and_a_sound(sdk: openai.OpenAI, facts: MultimodalFacts,
                                                   text_tokens: int) -> None:
    completion = sdk.chat.completions.create(model=OMNI, max_tokens=4, temperature=0, messages=[
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [QUESTION, image_part(data_url(picture(256, 256, seed=6))),  # type: ignore
                                     audio_part(audio_file(1.0, "mp3"), "mp3")]}])
    assert completion.usage is not None
    grown = completion.usage.prompt_tokens - text_tokens
    assert grown == pytest.approx(facts.image_tokens(256, 256) + facts.audio_tokens(1.0), abs=2)
    listed = {model.id: model for model in sdk.models.list()}
    assert (listed[OMNI].model_extra or {}).get("capabilities") == ["vision", "audio_input", "tools"]


def test_the_openai_sdk_gets_a_typed_error_naming_the_part(sdk: openai.OpenAI) -> None:
    with pytest.raises((openai.BadRequestError, openai.UnprocessableEntityError)) as caught:
        sdk.chat.completions.create(model=OMNI, max_tokens=4, messages=[
            {"role": "user", "content": [QUESTION, image_part(data_url(b"not an image at all" * 10))]}])  # type: ignore
    assert caught.value.body["param"] == "messages[0].content[1].image_url.url"  # type: ignore[index]


def test_langchain_human_message_with_an_image(appliance: RunningAppliance, key: str, facts: MultimodalFacts,
                                               text_tokens: int) -> None:
    from langchain_core.messages import HumanMessage, SystemMessage
    from langchain_openai import ChatOpenAI

    model = ChatOpenAI(model=OMNI, base_url=f"{appliance.url}/oai/v1", api_key=key, max_tokens=4,  # type: ignore
                       temperature=0, max_retries=0)
    reply = model.invoke([SystemMessage("Be brief."), HumanMessage(content=[
        QUESTION, {"type": "image_url", "image_url": {"url": data_url(picture(320, 240, "JPEG", seed=8),
                                                                      "image/jpeg")}}])])
    assert isinstance(reply.content, str)
    usage = reply.usage_metadata
    assert usage is not None and usage["input_tokens"] - text_tokens == facts.image_tokens(320, 240)


def test_batch_lines_carry_images_and_sounds_and_a_bad_one_fails_alone(sdk: openai.OpenAI,
                                                                        facts: MultimodalFacts) -> None:
    def line(custom_id: str, *parts: dict[str, Any]) -> dict[str, Any]:
        return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": chat(*parts)}

    lines = [line("image", image_part(data_url(picture(128, 128, seed=11)))),
             line("sound", audio_part(audio_file(1.0))),
             line("lying", image_part(data_url(picture(64, 64, "JPEG"), "image/png")))]
    uploaded = sdk.files.create(file=("media.jsonl", jsonl(lines)), purpose="batch")
    batch = sdk.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    deadline = time.monotonic() + 240
    while batch.status not in ("completed", "failed", "expired", "cancelled") and time.monotonic() < deadline:
        time.sleep(0.5)
        batch = sdk.batches.retrieve(batch.id)
    assert batch.status == "completed" and batch.output_file_id and batch.error_file_id, batch
    output_lines = sdk.files.content(batch.output_file_id).text.splitlines()
    output = {row["custom_id"]: row for row in map(json.loads, output_lines)}
    errors = [json.loads(row) for row in sdk.files.content(batch.error_file_id).text.splitlines()]
    assert sorted(output) == ["image", "sound"]
    assert all(row["response"]["status_code"] == 200 for row in output.values())
    assert [row["custom_id"] for row in errors] == ["lying"]
    assert "messages[1].content[1].image_url.url" in json.dumps(errors[0])


# --- metering ----------------------------------------------------------------------------


def test_a_budget_reserves_the_images_tokens_and_settles_to_the_engines_count(
        appliance: RunningAppliance, facts: MultimodalFacts, text_tokens: int) -> None:
    image = image_part(data_url(picture(512, 512, seed=12)))
    needed = text_tokens + facts.image_tokens(512, 512) + 4  # prompt and max_tokens
    budgeted = appliance.create_key("--budget-tokens", str(needed - 1), "--budget-period", "day")
    with appliance.client(budgeted, timeout=240) as client:
        refused = client.post("/v1/inference/chat", json=chat(image))
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "BUDGET_EXCEEDED", refused.text
        assert f"may use up to {needed}" in refused.json()["error"]["message"]  # the image counted before the engine
        small = client.post("/v1/inference/chat", json=chat(image_part(data_url(picture(56, 56, seed=12)))))
        assert small.status_code == 200, small.text
        used = small.json()["data"]["usage"]
        assert used["prompt_tokens"] == text_tokens + facts.image_tokens(56, 56)
        deadline = time.monotonic() + 30
        while True:  # the usage writer batches its rows
            rows = client.get("/v1/accounting/usage", params={"limit": 100}).json()["data"]["items"]
            done = [row for row in rows if row["status_code"] == 200]
            if done or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    assert [(row["tokens_in"], row["tokens_out"]) for row in done] == [(used["prompt_tokens"],
                                                                       used["completion_tokens"])]


# --- bad input: each refused naming the part, on both surfaces, never a 500 ----------------------------


def expired_media_url(appliance: RunningAppliance) -> str:
    """A media URL of this appliance whose token has expired: put through the store itself, as a generated image
    is, with a lifetime of a tenth of a second."""
    settings = Settings(state_dir=appliance.state_dir)
    store = MediaStore(open_database(settings.effective_database_url), settings.media_dir, ttl_s=3600)
    stored = store.put(picture(64, 64), "image/png", ttl_s=0.1)
    time.sleep(0.3)
    return f"{appliance.url}/v1/media/{stored.token}"


BAD: dict[str, tuple[Any, str, int, str]] = {
    # name: (the part, or a function of the appliance and the LAN host giving it; the field; status; said)
    "not an image": (image_part(data_url(b"\x89PNG\r\n\x1a\n is what it starts with, but it is text" * 4)),
                     "messages[1].content[1].image_url.url", 422, "could not be decoded as a PNG image"),
    "no format at all": (image_part(data_url(b"plain text, no picture" * 4)), "messages[1].content[1].image_url.url",
                         422, "is not an image (PNG, JPEG, WEBP or GIF)"),
    "not audio": (audio_part(b"RIFF\x00\x00\x00\x00WAVEthis is no sound" * 4),
                  "messages[1].content[1].input_audio.data", 422, "could not be decoded as WAV audio"),
    "an image for audio": (audio_part(picture(64, 64)), "messages[1].content[1].input_audio.data", 422,
                           "is a PNG image, not audio"),
    "over the size limit": (image_part("data:image/png;base64," + "A" * (PART_BYTES * 4 // 3 + 400)),
                            "messages[1].content[1].image_url.url", 413, f"({PART_BYTES} bytes"),
    "over the pixel limit": (image_part(data_url(picture(2500, 2000))), "messages[1].content[1].image_url.url", 413,
                             f"2500×2000 pixels, more than this appliance takes ({PIXELS} pixels)"),
    "a lying media type": (image_part(data_url(picture(64, 64, "JPEG"), "image/png")),
                           "messages[1].content[1].image_url.url", 422,
                           "declared as image/png, but its bytes are a JPEG image"),
    "a lying audio format": (audio_part(audio_file(1.0, "mp3"), "wav"), "messages[1].content[1].input_audio.data",
                             422, "its format is 'wav', but its bytes are MP3 audio"),
    "audio too long": (audio_part(audio_file(90.0, "mp3"), "mp3"), "messages[1].content[1].input_audio.data", 422,
                       "longer than model 'scailabs/poolnoodle-omni' takes in one part (81.9 s)"),
    "audio too short": (audio_part(audio_file(0.01)), "messages[1].content[1].input_audio.data", 422,
                        "too short for this model"),
    "not base64": ({"type": "input_audio", "input_audio": {"data": "%%% not base64 %%%", "format": "wav"}},
                   "messages[1].content[1].input_audio.data", 422, "is not valid base64"),
    "an unknown scheme": (image_part("file:///etc/passwd"), "messages[1].content[1].image_url.url", 422,
                          "must be a data: URL, this appliance's own /v1/media/tok_"),
    "a host not allowed": (lambda app, lan: image_part(f"http://127.0.0.1:{lan.port}/cat.png"),
                           "messages[1].content[1].image_url.url", 422,
                           "the host '127.0.0.1' is not in this appliance's media_url_allow setting"),
    "a redirect off the list": (lambda app, lan: image_part(f"http://localhost:{lan.port}/elsewhere"),
                                "messages[1].content[1].image_url.url", 422,
                                "the host '127.0.0.1' is not in this appliance's media_url_allow setting"),
    "an expired media token": (lambda app, lan: image_part(expired_media_url(app)),
                               "messages[1].content[1].image_url.url", 422, "unknown or has expired"),
    "an unknown file": (image_part("scaigrid://file/file-000000000000000000000000"),
                        "messages[1].content[1].image_url.url", 422, "no file 'file-000000000000000000000000' was "
                                                                     "uploaded with this API key"),
    "a PDF as a file part": ({"type": "file", "file": {"file_data": base64.b64encode(b"%PDF-1.7\n" * 20).decode()}},
                             "messages[1].content[1].file.file_data", 422, "is a PDF document"),
    "a vision part to a text-only model": (image_part(data_url(picture(64, 64))),
                                           "messages[1].content[1].image_url.url", 422,
                                           "model 'scailabs/tiny-chat' takes no images (its capabilities: tools)"),
    "a sound to a text-only model": (audio_part(audio_file(1.0)), "messages[1].content[1].input_audio.data", 422,
                                     "model 'scailabs/tiny-chat' takes no sounds (its capabilities: tools)"),
}


def check_refused(response: httpx.Response, path: str, field: str, status: int, said: str) -> None:
    if path.startswith("/oai/"):
        assert response.status_code == status or (status == 422 and response.status_code == 400), response.text
        error = response.json()["error"]
        assert error["param"] == field and said in error["message"], error
    else:
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert error["code"] == ("PAYLOAD_TOO_LARGE" if status == 413 else "VALIDATION_ERROR")
        assert error["details"][0]["field"] == field and said in error["message"], error


@pytest.mark.parametrize("path", ["/v1/inference/chat", "/oai/v1/chat/completions"])
@pytest.mark.parametrize("name", list(BAD))
def test_bad_media_is_refused_naming_the_part(http: httpx.Client, appliance: RunningAppliance, lan: LanHost,
                                              path: str, name: str) -> None:
    part, field, status, said = BAD[name]
    part = part(appliance, lan) if callable(part) else part
    model = TEXT_ONLY if "text-only" in name else OMNI
    seen = len(lan.seen)
    check_refused(http.post(path, json=chat(part, model=model)), path, field, status, said)
    if name == "a redirect off the list":
        assert lan.seen[seen:] == [(f"localhost:{lan.port}", "/elsewhere")]  # the hop to 127.0.0.1 never made
    else:
        assert lan.seen[seen:] == []


def test_too_many_images_names_the_one_past_the_models_limit(http: httpx.Client) -> None:
    images = [image_part(data_url(picture(28, 28, seed=n))) for n in range(5)]
    response = http.post("/v1/inference/chat", json=chat(*images))
    check_refused(response, "/v1", "messages[1].content[5].image_url.url", 422,
                  "model 'scailabs/poolnoodle-omni' takes at most 4 images in one request")


def test_images_beyond_the_context_window_are_refused_at_the_one_that_overflows(
        http: httpx.Client, facts: MultimodalFacts) -> None:
    images = [image_part(data_url(picture(896, 896, seed=20 + n))) for n in range(4)]
    assert 3 * facts.image_tokens(896, 896) < 4096 < 4 * facts.image_tokens(896, 896)
    check_refused(http.post("/oai/v1/chat/completions", json=chat(*images)), "/oai/v1",
                  "messages[1].content[4].image_url.url", 422,
                  f"take {4 * facts.image_tokens(896, 896)} prompt tokens, more than model "
                  "'scailabs/poolnoodle-omni' holds (4096)")


def test_another_keys_file_is_not_found(appliance: RunningAppliance, sdk: openai.OpenAI, http: httpx.Client) -> None:
    owned = sdk.files.create(file=("mine.png", picture(64, 64)), purpose="vision")
    stranger = appliance.create_key()
    with appliance.client(stranger) as client:
        for part in (image_part(f"scaigrid://file/{owned.id}"), {"type": "file", "file": {"file_id": owned.id}}):
            response = client.post("/oai/v1/chat/completions", json=chat(part))
            field = "messages[1].content[1]." + ("image_url.url" if part["type"] == "image_url" else "file.file_id")
            check_refused(response, "/oai/v1", field, 422, f"no file '{owned.id}' was uploaded with this API key")
    assert http.post("/v1/inference/chat", json=chat(image_part(f"scaigrid://file/{owned.id}"))).status_code == 200


def test_a_batch_file_is_no_image_and_an_image_upload_must_be_one(sdk: openai.OpenAI, http: httpx.Client) -> None:
    batch_file = sdk.files.create(file=("in.jsonl", b'{"custom_id": "a"}\n'), purpose="batch")
    check_refused(http.post("/v1/inference/chat", json=chat(image_part(f"scaigrid://file/{batch_file.id}"))), "/v1",
                  "messages[1].content[1].image_url.url", 422, "uploaded with purpose 'batch'")
    with pytest.raises((openai.BadRequestError, openai.UnprocessableEntityError)) as caught:
        sdk.files.create(file=("notes.txt", b"just text"), purpose="vision")
    assert caught.value.body["param"] == "file"  # type: ignore[index]
    with pytest.raises((openai.BadRequestError, openai.UnprocessableEntityError)) as caught:
        sdk.files.create(file=("a.png", picture(8, 8)), purpose="assistants")
    assert caught.value.body["param"] == "purpose"  # type: ignore[index]


def test_a_content_part_of_an_unknown_type_is_named(http: httpx.Client) -> None:
    response = http.post("/v1/inference/chat", json=chat({"type": "input_video", "video": "x"}))
    assert response.status_code == 422
    fields = [detail["field"] for detail in response.json()["error"]["details"]]
    assert "messages[1].content[1].type" in fields, fields


# --- the console ------------------------------------------------------------------------


@needs_browser
def test_the_consoles_playground_attaches_an_image_and_sounds_and_shows_them_in_the_transcript(
        appliance: RunningAppliance, tmp_path: Path) -> None:
    """In Debian's chromium: a PNG, a WAV and an Ogg Opus file (the browser makes it a WAV, as it does a
    recording) go to the omni model and into the transcript; the text-only model's refusal is shown."""
    key = appliance.create_key(*[f"--permission={p}" for p in ("models:list", "models:use", "admin:access")])
    files = {"square.png": picture(200, 150, seed=13), "tone.wav": audio_file(1.0), "tone.ogg": audio_file(1.0, "ogg")}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    with browser() as launched, watched_page(launched) as watched:
        tab = watched.page
        tab.goto(appliance.url + "/console/")
        tab.fill("#login-key", key)
        tab.click("#login-form button")
        tab.wait_for_selector("#page[data-page=status]")
        tab.click("#nav a[data-page=playground]")
        chat_card = tab.locator("section.card", has=tab.locator("h2", has_text="Chat"))
        chat_card.locator("select").first.select_option(OMNI)
        assert chat_card.locator("#chat-media-hint").inner_text() == "This model takes images and sounds."
        chat_card.locator("#chat-attach").set_input_files([str(tmp_path / name) for name in files])
        assert chat_card.locator("#chat-attachments li").count() == 3
        chat_card.locator("textarea").fill("What is in these?")
        chat_card.locator("input[type=number]").fill("4")
        chat_card.locator("button", has_text="Send").click()
        chat_card.locator(".done").wait_for(timeout=240_000)
        assert tab.locator("#chat-output").inner_text().strip()
        user_turn = tab.locator("#chat-transcript .turn.user")
        assert user_turn.locator(".said").inner_text() == "What is in these?"
        tab.wait_for_function("() => { const i = document.querySelector('#chat-transcript img.attachment');"
                              " return i && i.complete && i.naturalWidth === 200; }")
        assert user_turn.locator("audio.attachment").count() == 2
        snippet = chat_card.locator(".snippet-curl").text_content() or ""
        assert '"type":"image_url"' in snippet and '"type":"input_audio"' in snippet and "characters)" in snippet

        chat_card.locator("select").first.select_option(TEXT_ONLY)
        assert "text only" in chat_card.locator("#chat-media-hint").inner_text()
        chat_card.locator("button", has_text="Send").click()
        alert = chat_card.locator(".error")
        alert.wait_for(timeout=60_000)
        assert "takes no images (its capabilities: tools)" in alert.inner_text()
        SHOTS.mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(SHOTS / "playground-chat-media.png"), full_page=True)
    outside = [url for url in watched.requests if not url.startswith((appliance.url + "/", "blob:", "data:"))]
    assert not outside, f"the page reached outside the appliance: {outside}"
