"""The official openai npm package (tests/support/node, pinned: the last release for Node 20) against the appliance,
with only OPENAI_BASE_URL and OPENAI_API_KEY set: every operation a Node program would use, and its typed errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.compat.conftest import CHAT, EMBED, Box
from tests.support.audio import audio_file

NODE_DIR = Path(__file__).resolve().parents[1] / "support" / "node"


@pytest.fixture(scope="module")
def results(box: Box, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if shutil.which("node") is None or not (NODE_DIR / "node_modules" / "openai").is_dir():
        pytest.skip("Node or tests/support/node/node_modules is missing (scripts/test runs npm ci)")
    version = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True).stdout
    assert int(version.lstrip("v").split(".")[0]) >= 20, version
    work = tmp_path_factory.mktemp("node")
    (work / "clip.wav").write_bytes(audio_file(1.0))
    line = {"custom_id": "1", "method": "POST", "url": "/v1/embeddings", "body": {"model": EMBED, "input": "hi"}}
    (work / "in.jsonl").write_text(json.dumps(line) + "\n")
    env = {**os.environ, "OPENAI_BASE_URL": box.oai, "OPENAI_API_KEY": box.key, "CHAT_MODEL": CHAT,
           "AUDIO_FILE": str(work / "clip.wav"), "BATCH_FILE": str(work / "in.jsonl")}
    done = subprocess.run(["node", str(NODE_DIR / "openai_compat.mjs")], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def ok(results: dict[str, Any], name: str) -> Any:
    result = results[name]
    assert not (isinstance(result, dict) and "error" in result), (name, result)
    return result


def test_models_chat_and_completions(results: dict[str, Any]) -> None:
    assert CHAT in ok(results, "models.list") and ok(results, "models.retrieve") == "openai/whisper-1"
    chat = ok(results, "chat")
    assert chat["content"] and chat["finish"] == "length" and chat["requestID"].startswith("req_")
    assert ok(results, "chat.stream")["usage"]["completion_tokens"] == 5
    assert ok(results, "chat.tools")[0]["city"] in ("Paris", "Oslo")
    assert ok(results, "chat.runTools")[0]["city"] in ("Paris", "Oslo")  # the SDK's own tool loop called it
    assert ok(results, "completions")["usage"]["completion_tokens"] == 4 and ok(results, "completions.stream")


def test_embeddings_images_and_audio(results: dict[str, Any]) -> None:
    assert ok(results, "embeddings")["dimensions"] == 1536 and ok(results, "embeddings.tokens")["dimensions"] == 1536
    assert ok(results, "images.url")["status"] == 200 and ok(results, "images.url")["keys"] == ["revised_prompt", "url"]
    assert ok(results, "images.b64_json") == {"png": "PNG", "keys": ["b64_json", "revised_prompt"]}
    assert ok(results, "audio.transcriptions") == {"text": "string"}
    assert ok(results, "audio.transcriptions.verbose")["segments"] is True


def test_files_and_batches(results: dict[str, Any]) -> None:
    assert ok(results, "files.create")["purpose"] == "batch" and ok(results, "files.list") is True
    assert ok(results, "files.content") > 0 and ok(results, "batches.list") >= 1
    assert ok(results, "batches.create") == {"status": "completed", "counts": {"total": 1, "completed": 1, "failed": 0},
                                             "lines": 1}


def test_errors_are_the_sdk_s_typed_errors(results: dict[str, Any]) -> None:
    expected = {
        "error.invalid": ("BadRequestError", 400, "invalid_request_error", None, "temperature"),
        "error.context": ("BadRequestError", 400, "invalid_request_error", "context_length_exceeded", "messages"),
        "error.model": ("NotFoundError", 404, "invalid_request_error", "model_not_found", None),
        "error.key": ("AuthenticationError", 401, "invalid_request_error", "invalid_api_key", None),
    }
    for name, (kind, status, error_type, code, param) in expected.items():
        got = results[name]
        assert (got["error"], got["status"], got["type"], got["code"], got["param"]) == \
            (kind, status, error_type, code, param), (name, got)
        assert got["requestID"].startswith("req_")
