"""Images and files in Responses input, end to end: the real gateway, the tiny omni model on vLLM (CPU build).

A Responses request's ``input_image`` and ``input_file`` parts become chat's ``image_url`` and ``file`` parts
(serving/response_chat.py) and are read, checked and costed as chat's are (serving/media_parts.py); these
tests hold that they are, that the engine counts the image's tokens, and that every refusal names the field
the client wrote (``input[1].content[2].file_id``) in OpenAI's error shape. The limits themselves are chat's
and are tested there (tests/e2e/test_chat_media.py).

One appliance for the module: the omni model (vLLM starts once) and the tiny text-only chat model, which is
only ever refused (it never loads).
"""

from __future__ import annotations

import base64
import json
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import tomli_w

from appliance.engines.multimodal import MultimodalFacts
from tests.batch.helpers import jsonl
from tests.conftest import catalogue_subset
from tests.support.appliance import RunningAppliance, start_appliance
from tests.support.audio import audio_file
from tests.support.openai_schema import conforms, conforms_event
from tests.support.pictures import data_url, picture

OMNI = "scailabs/poolnoodle-omni"
TEXT_ONLY = "scailabs/tiny-chat"
PART_BYTES = 2 * 1024 * 1024  # the module's max_media_part_bytes
QUESTION = {"type": "input_text", "text": "What is in this?"}
NOT_A_PICTURE = b"plain text, no picture" * 4


@pytest.fixture(scope="module")
def appliance(tiny_catalogue: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAppliance]:
    state = tmp_path_factory.mktemp("responses-media")
    catalogue = catalogue_subset(tiny_catalogue, [OMNI, TEXT_ONLY], state / "models.toml")
    data = tomllib.loads(catalogue.read_text())
    for table in data["model"]:
        table["load"] = "startup" if table["slug"] == OMNI else "on-demand"
    catalogue.write_text(tomli_w.dumps(data))
    env = {"APPLIANCE_MAX_MEDIA_PART_BYTES": str(PART_BYTES), "APPLIANCE_REQUEST_WAIT_S": "240"}
    with start_appliance(catalogue, state, env=env) as running:
        yield running


@pytest.fixture(scope="module")
def key(appliance: RunningAppliance) -> str:
    return appliance.create_key()


@pytest.fixture(scope="module")
def http(appliance: RunningAppliance, key: str) -> Iterator[httpx.Client]:
    with appliance.client(key, timeout=240) as client:
        yield client


@pytest.fixture(scope="module")
def sdk(appliance: RunningAppliance, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{appliance.url}/oai/v1", api_key=key, max_retries=0, timeout=240)


def request(*parts: dict[str, Any], model: str = OMNI, **extra: Any) -> dict[str, Any]:
    """The question and ``parts`` in one user message, after a system message of instructions."""
    return {"model": model, "instructions": "Be brief.", "max_output_tokens": 4, "temperature": 0,
            "input": [{"role": "user", "content": [QUESTION, *parts]}], **extra}


def respond(http: httpx.Client, *parts: dict[str, Any], **extra: Any) -> dict[str, Any]:
    answer = http.post("/oai/v1/responses", json=request(*parts, **extra))
    assert answer.status_code == 200, answer.text
    response = answer.json()
    conforms("Response", response)
    assert response["output"][0]["type"] == "message"
    return response  # type: ignore[no-any-return]


def input_tokens(http: httpx.Client, *parts: dict[str, Any]) -> int:
    return int(respond(http, *parts)["usage"]["input_tokens"])


@pytest.fixture(scope="module")
def text_tokens(http: httpx.Client) -> int:
    """The input tokens of the question alone: what every part's cost is measured from."""
    return input_tokens(http)


def image(url: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"type": "input_image", **({"image_url": url} if url else {}), **fields}


def file(**fields: Any) -> dict[str, Any]:
    return {"type": "input_file", **fields}


def refused(answer: httpx.Response, param: str, said: str, status: int = 400) -> dict[str, Any]:
    """OpenAI's error: ``invalid_request_error`` naming the Responses field (never a chat one)."""
    assert answer.status_code == status, answer.text
    assert set(answer.json()) == {"error"}
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param, error
    assert said in error["message"] and "messages[" not in error["message"], error
    return error  # type: ignore[no-any-return]


# --- what it takes, and what the engine counts --------------------------------------------------------------------


def test_an_image_as_a_data_url_is_seen_and_counted(http: httpx.Client, facts: MultimodalFacts,
                                                    text_tokens: int) -> None:
    url = data_url(picture(640, 480, "JPEG", seed=1), "image/jpeg")
    response = respond(http, image(url, detail="auto"))
    assert response["usage"]["input_tokens"] - text_tokens == facts.image_tokens(640, 480) > 0
    listed = http.get(f"/oai/v1/responses/{response['id']}/input_items").json()
    conforms("ResponseItemList", listed)
    assert listed["data"][0]["content"][1] == {"type": "input_image", "image_url": url, "file_id": None,
                                               "detail": "auto"}


def test_detail_low_and_original(http: httpx.Client, facts: MultimodalFacts, text_tokens: int) -> None:
    url = data_url(picture(1024, 1024, seed=2))
    assert input_tokens(http, image(url, detail="original")) - text_tokens == facts.image_tokens(1024, 1024)
    assert input_tokens(http, image(url, detail="low")) - text_tokens == 18 * 18 + 2  # at most 512×512 pixels


def test_an_uploaded_image_by_file_id_and_as_an_input_file(sdk: openai.OpenAI, http: httpx.Client,
                                                           facts: MultimodalFacts, text_tokens: int) -> None:
    uploaded = sdk.files.create(file=("photo.png", picture(800, 600, seed=3)), purpose="vision")
    cost = facts.image_tokens(800, 600)
    assert input_tokens(http, image(file_id=uploaded.id)) - text_tokens == cost
    assert input_tokens(http, file(file_id=uploaded.id)) - text_tokens == cost
    listed = sdk.responses.input_items.list(respond(http, file(file_id=uploaded.id))["id"])
    assert listed.data[0].content[1].type == "input_file"  # type: ignore[union-attr]
    assert listed.data[0].content[1].file_id == uploaded.id  # type: ignore[union-attr]


def test_an_input_file_with_inline_data_base64_or_a_data_url(http: httpx.Client, facts: MultimodalFacts,
                                                             text_tokens: int) -> None:
    png = picture(300, 200, seed=4)
    cost = facts.image_tokens(300, 200)
    assert input_tokens(http, file(file_data=base64.b64encode(png).decode(), filename="x.png")) - text_tokens == cost
    assert input_tokens(http, file(file_data=data_url(png), filename="x.png")) - text_tokens == cost


def test_an_input_file_may_be_a_sound(sdk: openai.OpenAI, http: httpx.Client, facts: MultimodalFacts,
                                      text_tokens: int) -> None:
    sound = sdk.files.create(file=("hello.wav", audio_file(2.0)), purpose="user_data")
    grown = input_tokens(http, file(file_id=sound.id)) - text_tokens
    assert grown == pytest.approx(facts.audio_tokens(2.0), abs=2)


def test_a_streamed_response_about_an_image(http: httpx.Client, facts: MultimodalFacts, text_tokens: int) -> None:
    body = request(image(data_url(picture(400, 300, seed=5))), stream=True, max_output_tokens=8)
    with http.stream("POST", "/oai/v1/responses", json=body) as answer:
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/event-stream")
        frames = [frame for frame in answer.read().split(b"\n\n") if frame.strip()]
    events = [json.loads(frame.split(b"\n", 1)[1].removeprefix(b"data: ")) for frame in frames]
    for event in events:
        conforms_event(event)
    assert events[0]["type"] == "response.created" and events[-1]["type"] in ("response.completed",
                                                                              "response.incomplete")
    text = "".join(event["delta"] for event in events if event["type"] == "response.output_text.delta")
    final = events[-1]["response"]
    assert text and final["output"][0]["content"][0]["text"] == text
    assert final["usage"]["input_tokens"] - text_tokens == facts.image_tokens(400, 300)


def test_the_openai_sdk_sends_an_image(sdk: openai.OpenAI, facts: MultimodalFacts, text_tokens: int) -> None:
    response = sdk.responses.create(model=OMNI, instructions="Be brief.", max_output_tokens=4, temperature=0, input=[
        {"role": "user", "content": [QUESTION, {"type": "input_image", "detail": "auto",  # type: ignore[list-item]
                                                "image_url": data_url(picture(256, 256, seed=6))}]}])
    assert response.status in ("completed", "incomplete") and isinstance(response.output_text, str)
    assert response.usage is not None
    assert response.usage.input_tokens - text_tokens == facts.image_tokens(256, 256)


def test_a_continued_response_sees_the_earlier_image_again(http: httpx.Client, facts: MultimodalFacts) -> None:
    url = data_url(picture(200, 200, seed=7))
    first = respond(http, image(url), instructions=None)
    said = first["output"][0]["content"][0]["text"]
    continued = respond(http, input="And its colour?", previous_response_id=first["id"], instructions=None)

    def whole(*parts: dict[str, Any]) -> int:  # the same conversation, sent whole
        return int(respond(http, instructions=None, input=[
            {"role": "user", "content": [QUESTION, *parts]}, {"role": "assistant", "content": said},
            {"role": "user", "content": "And its colour?"}])["usage"]["input_tokens"])

    with_image = whole(image(url))
    assert continued["usage"]["input_tokens"] == with_image
    assert with_image - whole() == facts.image_tokens(200, 200)


def test_a_batch_line_of_url_v1_responses_carries_an_image(sdk: openai.OpenAI, facts: MultimodalFacts,
                                                           text_tokens: int) -> None:
    lines = [{"custom_id": "image", "method": "POST", "url": "/v1/responses",
              "body": request(image(data_url(picture(128, 128, seed=8))))},
             {"custom_id": "not an image", "method": "POST", "url": "/v1/responses",
              "body": request(file(file_data=base64.b64encode(b"%PDF-1.7\n" * 20).decode()))}]
    uploaded = sdk.files.create(file=("media.jsonl", jsonl(lines)), purpose="batch")
    batch = sdk.batches.create(input_file_id=uploaded.id, endpoint="/v1/responses", completion_window="24h")
    deadline = time.monotonic() + 240
    while batch.status not in ("completed", "failed", "expired", "cancelled") and time.monotonic() < deadline:
        time.sleep(0.5)
        batch = sdk.batches.retrieve(batch.id)
    assert batch.status == "completed" and batch.output_file_id and batch.error_file_id, batch
    [done] = [json.loads(line) for line in sdk.files.content(batch.output_file_id).text.splitlines()]
    [failed] = [json.loads(line) for line in sdk.files.content(batch.error_file_id).text.splitlines()]
    assert done["custom_id"] == "image" and done["response"]["status_code"] == 200
    assert done["response"]["body"]["usage"]["input_tokens"] - text_tokens == facts.image_tokens(128, 128)
    assert failed["custom_id"] == "not an image" and "input[0].content[1].file_data" in json.dumps(failed)


def test_a_background_response_reads_its_image_when_it_runs(http: httpx.Client, facts: MultimodalFacts,
                                                             text_tokens: int) -> None:
    def finished(response_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + 120
        while True:
            got = http.get(f"/oai/v1/responses/{response_id}").json()
            if got["status"] not in ("queued", "in_progress") or time.monotonic() > deadline:
                conforms("Response", got)
                return got  # type: ignore[no-any-return]
            time.sleep(0.3)

    def queued(*parts: dict[str, Any]) -> str:
        answer = http.post("/oai/v1/responses", json=request(*parts, background=True))
        assert answer.status_code == 200 and answer.json()["status"] == "queued", answer.text
        return str(answer.json()["id"])

    good, bad = queued(image(data_url(picture(160, 120, seed=12)))), queued(image(data_url(NOT_A_PICTURE)))
    assert finished(good)["usage"]["input_tokens"] - text_tokens == facts.image_tokens(160, 120)
    failed = finished(bad)
    assert failed["status"] == "failed" and failed["error"]["code"] == "invalid_prompt"
    assert failed["error"]["message"].startswith("input[0].content[1].image_url: is not an image")


# --- refusals: OpenAI's invalid_request_error, param the Responses field --------------------------------------------


BAD: dict[str, tuple[dict[str, Any], str, str]] = {
    # name: (the part after the question; the param; what the message says)
    "bytes that are not an image": (image(data_url(NOT_A_PICTURE)), "input[0].content[1].image_url",
                                    "is not an image (PNG, JPEG, WEBP or GIF)"),
    "a file that is neither image nor sound": (file(file_data=base64.b64encode(b"%PDF-1.7\n" * 20).decode()),
                                               "input[0].content[1].file_data", "is a PDF document"),
    "a lying data: URL": (file(file_data=data_url(picture(64, 64, "JPEG"), "image/png")),
                          "input[0].content[1].file_data", "declared as image/png, but its bytes are a JPEG image"),
    "an unknown file": (image(file_id="file-000000000000000000000000"), "input[0].content[1].file_id",
                        "no file 'file-000000000000000000000000' was uploaded with this API key"),
    "a file_url on no allowed host": (file(file_url="http://127.0.0.1:9/cat.png"), "input[0].content[1].file_url",
                                      "the host '127.0.0.1' is not in this appliance's media_url_allow setting"),
    "a file: URL": (image("file:///etc/passwd"), "input[0].content[1].image_url", "must be a data: URL"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_media_is_refused_naming_the_responses_field(http: httpx.Client, name: str) -> None:
    part, param, said = BAD[name]
    refused(http.post("/oai/v1/responses", json=request(part)), param, said)


def test_an_image_to_a_text_only_model(http: httpx.Client, sdk: openai.OpenAI) -> None:
    body = request(image(data_url(picture(64, 64))), model=TEXT_ONLY)
    refused(http.post("/oai/v1/responses", json=body), "input[0].content[1].image_url",
            "model 'scailabs/tiny-chat' takes no images (its capabilities: tools)")
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.responses.create(**body)
    assert caught.value.param == "input[0].content[1].image_url"  # type: ignore[attr-defined]
    refused(http.post("/oai/v1/responses", json={**body, "stream": True}), "input[0].content[1].image_url",
            "takes no images")  # before the stream begins: an ordinary error answer


def test_the_field_is_the_input_items_whatever_came_before_it(http: httpx.Client) -> None:
    """Instructions and earlier items add chat messages before the part: the name is still its input index."""
    body = {"model": OMNI, "instructions": "Be brief.", "max_output_tokens": 4, "input": [
        {"role": "developer", "content": "Look closely."},
        {"role": "user", "content": "Hello."},
        {"role": "assistant", "content": "Hi."},
        {"type": "function_call", "call_id": "c1", "name": "look", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "nothing"},
        {"role": "user", "content": [QUESTION, image(data_url(picture(32, 32, seed=9))),
                                     file(file_data=base64.b64encode(NOT_A_PICTURE).decode())]}]}
    refused(http.post("/oai/v1/responses", json=body), "input[5].content[2].file_data",
            "is of no format this appliance reads; a file part on this appliance carries an image")


def test_another_keys_file_is_not_found(appliance: RunningAppliance, sdk: openai.OpenAI, http: httpx.Client) -> None:
    owned = sdk.files.create(file=("mine.png", picture(64, 64, seed=10)), purpose="vision")
    with appliance.client(appliance.create_key()) as stranger:
        for part, param in ((image(file_id=owned.id), "input[0].content[1].file_id"),
                            (file(file_id=owned.id), "input[0].content[1].file_id")):
            refused(stranger.post("/oai/v1/responses", json=request(part)), param,
                    f"no file '{owned.id}' was uploaded with this API key")
    respond(http, image(file_id=owned.id))  # its owner's


def test_a_part_over_the_size_limit_is_a_413_naming_it(http: httpx.Client) -> None:
    big = base64.b64encode(bytes(PART_BYTES + 300)).decode()
    refused(http.post("/oai/v1/responses", json=request(file(file_data=big))), "input[0].content[1].file_data",
            f"({PART_BYTES} bytes", status=413)


@pytest.mark.parametrize(("item", "param"), [
    ({"role": "system", "content": [image(data_url(picture(32, 32)))]}, "input[0].content[0].type"),
    ({"role": "assistant", "content": [image(data_url(picture(32, 32)))]}, "input[0].content[0].type"),
])
def test_an_image_outside_a_user_message_is_refused(http: httpx.Client, item: dict[str, Any], param: str) -> None:
    body = {"model": OMNI, "input": [item, {"role": "user", "content": "What was that?"}], "max_output_tokens": 4}
    refused(http.post("/oai/v1/responses", json=body), param, "carries text only")


def test_a_file_gone_from_a_continued_conversation_names_previous_response_id(sdk: openai.OpenAI,
                                                                              http: httpx.Client) -> None:
    uploaded = sdk.files.create(file=("gone.png", picture(64, 64, seed=11)), purpose="vision")
    first = respond(http, image(file_id=uploaded.id))
    sdk.files.delete(uploaded.id)
    answer = http.post("/oai/v1/responses", json={"model": OMNI, "input": "And now?", "max_output_tokens": 4,
                                                  "previous_response_id": first["id"]})
    error = refused(answer, "previous_response_id", f"no file '{uploaded.id}' was uploaded with this API key")
    assert f"input[0].content[1].file_id of response {first['id']} (which this one continues)" in error["message"]
