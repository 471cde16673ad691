"""POST /v1/inference/images/generate end to end: real gateway, real diffusers worker on the tiny SDXL pipeline.

Real sizes (1024 and up) take seconds each on a CPU, so only the seed examples
and the size test use them; everything else asks for 256x256, a size this
test catalogue adds to the seed's three.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

from appliance.config import load_settings
from appliance.media.files import TMP_PREFIX, is_handover_name
from tests.conftest import catalogue_subset
from tests.support.appliance import RunningAppliance, start_appliance

SEED_SIZES = ["1024x1024", "1792x1024", "1024x1792"]
SMALL = "256x256"
SEED_HOST = "https://scaigrid.scailabs.ai"

# The seed page's examples, verbatim; the tests change only the host.
SEED_PYTHON = '''import httpx, os

resp = httpx.post(
    "https://scaigrid.scailabs.ai/v1/inference/images/generate",
    headers={"Authorization": f"Bearer {os.environ['SCAIGRID_API_KEY']}"},
    json={
        "model": "openai/dall-e-3",
        "prompt": "A cozy reading nook with warm lighting, studio ghibli style",
        "size": "1024x1024",
        "quality": "standard",
        "n": 1,
    },
    timeout=120,
)
data = resp.json()["data"]
print(data["data"][0]["url"])
'''

SEED_DOWNLOAD = '''import httpx, base64

# If URL format
img_resp = httpx.get(data["data"][0]["url"])
with open("output.png", "wb") as f:
    f.write(img_resp.content)
'''

SEED_CURL = '''curl -X POST https://scaigrid.scailabs.ai/v1/inference/images/generate \\
  -H "Authorization: Bearer $SCAIGRID_API_KEY" \\
  -H "Content-Type: application/json" \\
  -d '{
    "model": "openai/dall-e-3",
    "prompt": "A cozy reading nook with warm lighting, studio ghibli style",
    "size": "1024x1024",
    "quality": "standard",
    "n": 1
  }'
'''


@pytest.fixture(scope="module")
def images_appliance(tiny_catalogue: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    state = tmp_path_factory.mktemp("images-state")
    options = {"sizes": [*SEED_SIZES, SMALL], "steps": {"standard": 2, "hd": 3}, "blocked_terms": ["forbidden"],
               "max_batch": 2}  # n=3 then takes two pipeline calls
    catalogue = catalogue_subset(tiny_catalogue, ["stability/sd-xl"], state / "models.toml", engine_options=options)
    with start_appliance(catalogue, state) as running:
        yield running


@pytest.fixture(scope="module")
def key(images_appliance: RunningAppliance) -> str:
    return images_appliance.create_key()


def generate(app: RunningAppliance, key: str, **body: Any) -> httpx.Response:
    payload = {"model": "openai/dall-e-3", "prompt": "a red cat on a mat", "size": SMALL, **body}
    with app.client(key, timeout=300) as client:
        return client.post("/v1/inference/images/generate", json=payload)


def png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    image.load()
    return image


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert body["status"] == "error", body
    return body["error"]


def test_the_seed_python_example_runs_verbatim_and_the_image_opens(
        images_appliance: RunningAppliance, key: str, tmp_path: Path) -> None:
    script = (SEED_PYTHON + "\n" + SEED_DOWNLOAD).replace(SEED_HOST, images_appliance.url)
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "SCAIGRID_API_KEY": key}, timeout=300)
    assert result.returncode == 0, result.stderr
    url = result.stdout.strip()
    assert url.startswith(f"{images_appliance.url}/v1/media/tok_")
    assert png((tmp_path / "output.png").read_bytes()).size == (1024, 1024)


def test_the_seed_curl_example_runs_verbatim(images_appliance: RunningAppliance, key: str) -> None:
    script = SEED_CURL.replace(SEED_HOST, images_appliance.url)
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                            env={**os.environ, "SCAIGRID_API_KEY": key}, timeout=300)
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["status"] == "ok" and body["meta"]["request_id"].startswith("req_")
    [item] = body["data"]["data"]
    assert item["b64_json"] is None
    assert item["revised_prompt"] == "A cozy reading nook with warm lighting, studio ghibli style"
    assert isinstance(body["data"]["created"], int)
    download = httpx.get(item["url"], timeout=60)  # no key: the token is the credential
    assert download.status_code == 200 and download.headers["content-type"] == "image/png"
    assert png(download.content).size == (1024, 1024)


@pytest.mark.parametrize("size", SEED_SIZES[1:])  # 1024x1024: the seed examples above
def test_every_seed_size_comes_back_at_that_size(images_appliance: RunningAppliance, key: str, size: str) -> None:
    response = generate(images_appliance, key, size=size)
    assert response.status_code == 200, response.text
    assert response.headers["x-scaigrid-model"] == "stability/sd-xl"
    assert response.headers["x-scaigrid-backend"]
    url = response.json()["data"]["data"][0]["url"]
    width, height = (int(side) for side in size.split("x"))
    assert png(httpx.get(url, timeout=60).content).size == (width, height)


def test_b64_json_inlines_the_png(images_appliance: RunningAppliance, key: str) -> None:
    response = generate(images_appliance, key, response_format="b64_json", quality="hd", style="natural",
                        metadata={"project": "tests"})
    assert response.status_code == 200, response.text
    [item] = response.json()["data"]["data"]
    assert item["url"] is None and item["revised_prompt"] == "a red cat on a mat"
    assert png(base64.b64decode(item["b64_json"])).size == (256, 256)


def test_n_images_get_n_distinct_urls(images_appliance: RunningAppliance, key: str) -> None:
    response = generate(images_appliance, key, n=3, model="stability/sd-xl")
    assert response.status_code == 200, response.text
    urls = [item["url"] for item in response.json()["data"]["data"]]
    assert len(set(urls)) == 3
    images = [httpx.get(url, timeout=60).content for url in urls]
    assert all(png(image).size == (256, 256) for image in images)
    assert len(set(images)) == 3


def test_the_openai_sdk_generates_through_the_oai_surface(images_appliance: RunningAppliance, key: str) -> None:
    client = openai.OpenAI(api_key=key, base_url=f"{images_appliance.url}/oai/v1", max_retries=0, timeout=300)
    inline = client.images.generate(model="openai/dall-e-3", prompt="a lake at night", size=SMALL,  # type: ignore[arg-type]
                                    response_format="b64_json", n=2)
    assert len(inline.data or []) == 2
    assert all(png(base64.b64decode(image.b64_json or "")).size == (256, 256) for image in inline.data or [])
    linked = client.images.generate(model="openai/dall-e-3", prompt="a lake at night", size=SMALL)  # type: ignore[arg-type]
    assert png(httpx.get((linked.data or [])[0].url or "", timeout=60).content).size == (256, 256)
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(model="openai/dall-e-3", prompt="a lake", size="512x512")  # type: ignore[arg-type]
    assert caught.value.body["param"] == "size"  # type: ignore[index]


@pytest.mark.parametrize(("change", "field"), [
    ({"prompt": None}, "prompt"),
    ({"prompt": ""}, "prompt"),
    ({"prompt": "   "}, "prompt"),
    ({"prompt": "x" * 100_000}, "prompt"),
    ({"size": "512x512"}, "size"),
    ({"size": "huge"}, "size"),
    ({"n": 0}, "n"),
    ({"n": 11}, "n"),
    ({"n": "2"}, "n"),
    ({"quality": "ultra"}, "quality"),
    ({"style": "loud"}, "style"),
    ({"response_format": "jpeg"}, "response_format"),
    ({"metadata": "not an object"}, "metadata"),
    ({"model": None}, "model"),
])
def test_bad_input_is_a_validation_error_naming_the_field(
        images_appliance: RunningAppliance, key: str, change: dict[str, Any], field: str) -> None:
    body = {"model": "openai/dall-e-3", "prompt": "a cat", "size": SMALL, **change}
    body = {name: value for name, value in body.items() if value is not None}
    with images_appliance.client(key) as client:
        response = client.post("/v1/inference/images/generate", json=body)
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["code"] == "VALIDATION_ERROR"
    assert error["details"][0]["field"] == field
    assert error["message"].startswith(field)


def test_a_safety_rejection_is_a_backend_error(images_appliance: RunningAppliance, key: str) -> None:
    response = generate(images_appliance, key, prompt="a Forbidden thing")
    assert response.status_code == 502
    error = error_of(response)
    assert error["code"] == "BACKEND_ERROR" and "safety filter" in error["message"]


def test_models_keys_and_access(images_appliance: RunningAppliance, key: str) -> None:
    assert generate(images_appliance, key, model="openai/dall-e-2").json()["error"]["code"] == "MODEL_NOT_FOUND"
    other = images_appliance.create_key("--model", "openai/text-embedding-3-small")
    denied = generate(images_appliance, other)
    assert denied.status_code == 403 and error_of(denied)["code"] == "MODEL_ACCESS_DENIED"
    with images_appliance.client() as client:
        missing = client.post("/v1/inference/images/generate", json={"model": "openai/dall-e-3", "prompt": "x"})
    assert missing.status_code == 401 and error_of(missing)["code"] == "AUTH_TOKEN_MISSING"
    with images_appliance.client(key) as client:
        listed = client.get("/v1/models", params={"modality": "image"}).json()["data"]["items"]
    assert [item["slug"] for item in listed] == ["stability/sd-xl"]


@pytest.mark.parametrize("token", [
    "tok_" + "A" * 43, "tok_short", "..%2Fappliance.db", "%2e%2e", "tok_..%2F..%2Fappliance.db", "appliance.db",
])
def test_unknown_or_malformed_media_tokens_are_not_found(images_appliance: RunningAppliance, token: str) -> None:
    response = httpx.get(f"{images_appliance.url}/v1/media/{token}", timeout=30)
    assert response.status_code == 404
    assert error_of(response)["code"] == "NOT_FOUND"


def test_media_files_live_in_the_state_dir_named_by_hash(images_appliance: RunningAppliance, key: str) -> None:
    token = generate(images_appliance, key).json()["data"]["data"][0]["url"].rsplit("/", 1)[1]
    names = os.listdir(images_appliance.state_dir / "media")
    assert names and all(len(name) == len("0" * 64 + ".png") for name in names)
    assert not any(token[4:] in name for name in names)


def ask_worker(app: RunningAppliance, **body: Any) -> dict[str, Any]:
    """What the image worker itself answers, straight from its Unix socket (the gateway's side of the hop)."""
    [socket] = load_settings(None, state_dir=app.state_dir).socket_dir.glob("*sd-xl*.sock")
    payload = {"model": "stability/sd-xl", "prompt": "a red cat", "size": SMALL, **body}
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(socket)), base_url="http://worker", timeout=300) as client:
        response = client.post("/v1/images/generations", json=payload)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_a_url_request_makes_the_worker_write_files_the_gateway_never_decodes(
        images_appliance: RunningAppliance, key: str) -> None:
    media = images_appliance.state_dir / "media"
    answer = ask_worker(images_appliance, n=2, response_format="url")
    assert set(answer) == {"created", "files"} and "b64_json" not in json.dumps(answer)  # no base64 on the wire
    for item in answer["files"]:
        written = media / item["file"]
        assert is_handover_name(item["file"]) and item["size"] == written.stat().st_size
        assert png(written.read_bytes()).size == (256, 256) and item["content_type"] == "image/png"
        written.unlink()  # not registered by anyone: the sweep would remove it after its grace period
    assert not any(name.startswith(TMP_PREFIX) for name in os.listdir(media))  # written whole, then renamed


def test_a_b64_request_gets_base64_from_the_worker_and_no_file(images_appliance: RunningAppliance) -> None:
    before = set(os.listdir(images_appliance.state_dir / "media"))
    answer = ask_worker(images_appliance, response_format="b64_json")
    [item] = answer["data"]
    assert png(base64.b64decode(item["b64_json"])).size == (256, 256)
    assert set(os.listdir(images_appliance.state_dir / "media")) == before


def test_the_gateway_registers_the_workers_files_under_their_hash(images_appliance: RunningAppliance,
                                                                  key: str) -> None:
    response = generate(images_appliance, key, n=2)
    assert response.status_code == 200, response.text
    names = os.listdir(images_appliance.state_dir / "media")
    assert not any(is_handover_name(name) or name.startswith(TMP_PREFIX) for name in names)
    for item in response.json()["data"]["data"]:
        assert png(httpx.get(item["url"], timeout=60).content).size == (256, 256)
