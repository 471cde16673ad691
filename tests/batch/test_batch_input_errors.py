"""Bad batch input gets a clear error, never a 500: at submission (enveloped), or a failed batch naming each line."""

from __future__ import annotations

import base64
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.batch.helpers import EMBED, b64, embed_line, jsonl, wait_batch
from tests.conftest import catalogue_subset
from tests.support.appliance import RunningAppliance, free_port, start_appliance


@pytest.fixture(scope="module")
def served_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A plain HTTP server on 127.0.0.1 holding one good input file, input.jsonl."""
    root = tmp_path_factory.mktemp("served")
    (root / "input.jsonl").write_bytes(jsonl([embed_line("from-url")]))
    handler = lambda *args: http.server.SimpleHTTPRequestHandler(*args, directory=str(root))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def appliance(tiny_catalogue: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAppliance]:
    state = tmp_path_factory.mktemp("batch-errors-state")
    catalogue = catalogue_subset(tiny_catalogue, [EMBED], state / "models.toml", load="startup")
    with start_appliance(catalogue, state, env={"APPLIANCE_BATCH_URL_ALLOW": '["127.0.0.1"]'}) as running:
        yield running


def submit(appliance: RunningAppliance, body: dict[str, object], key: str | None = None) -> tuple[int, dict]:
    with appliance.client(key or appliance.create_key()) as http:
        answer = http.post("/v1/inference/batch", json=body)
    return answer.status_code, answer.json()


@pytest.mark.parametrize("body, status, code, words", [
    ({}, 422, "VALIDATION_ERROR", "exactly one of input_file_url and input_file_base64"),
    ({"input_file_url": "scaigrid://file/x", "input_file_base64": "e30K"}, 422, "VALIDATION_ERROR", "exactly one"),
    ({"input_file_base64": "not base64!"}, 422, "VALIDATION_ERROR", "not valid base64"),
    ({"input_file_base64": "e30K", "endpoint_completion_window": "2d"}, 422, "VALIDATION_ERROR",
     "endpoint_completion_window"),
    ({"input_file_base64": "e30K", "metadata": {str(n): "v" for n in range(17)}}, 422, "VALIDATION_ERROR",
     "at most 16"),
    ({"input_file_url": "http://10.0.0.7/input.jsonl"}, 422, "VALIDATION_ERROR", "not in this appliance's"),
    ({"input_file_url": "ftp://127.0.0.1/input.jsonl"}, 422, "VALIDATION_ERROR", "http(s) URL"),
    ({"input_file_url": f"http://127.0.0.1:{free_port()}/input.jsonl"}, 422, "VALIDATION_ERROR",
     "could not be fetched"),
    ({"input_file_url": "scaigrid://file/file-unknown"}, 404, "NOT_FOUND", "file-unknown"),
])
def test_a_bad_submission_is_refused_with_a_clear_error(appliance: RunningAppliance, body: dict[str, object],
                                                        status: int, code: str, words: str) -> None:
    got, answer = submit(appliance, body)
    assert got == status, answer
    assert answer["status"] == "error" and answer["error"]["code"] == code
    assert words in answer["error"]["message"] or words in json.dumps(answer["error"].get("details"))


def test_base64_over_10_mb_is_too_large(appliance: RunningAppliance) -> None:
    got, answer = submit(appliance, {"input_file_base64": base64.b64encode(b"x" * (10 * 1024 * 1024 + 10)).decode()})
    assert got == 413 and answer["error"]["code"] == "PAYLOAD_TOO_LARGE"


def test_an_allowed_url_is_fetched_and_run(appliance: RunningAppliance, served_files: str) -> None:
    with appliance.client(appliance.create_key()) as http:
        answer = http.post("/v1/inference/batch", json={"input_file_url": served_files + "/input.jsonl"})
        assert answer.status_code == 200, answer.text
        done = wait_batch(http, answer.json()["data"]["id"])
    assert done["status"] == "completed" and done["request_counts"]["completed"] == 1
    missing = submit(appliance, {"input_file_url": served_files + "/nothing.jsonl"})
    assert missing[0] == 422 and "HTTP 404" in missing[1]["error"]["message"]


GOOD = json.dumps(embed_line("good"))


@pytest.mark.parametrize("content, expected", [
    (b"\x89PNG\x1a\x00 binary, no JSON", [("invalid_json_line", 1)]),
    (b"", [("empty_file", None)]),
    (f"{GOOD}\n[1, 2]\n".encode(), [("invalid_json_line", 2)]),
    (f'{GOOD}\n{{"custom_id": "x", "method": "POST", "url": "/v1/inference/embed"}}\n'.encode(),
     [("missing_required_parameter", 2)]),
    (f"{GOOD}\n{GOOD}\n{GOOD}\n".encode(), [("duplicate_custom_id", 2), ("duplicate_custom_id", 3)]),
    (jsonl([embed_line("a", url="/v1/inference/audio/transcribe"), embed_line("b", url="/v1/embeddings")]),
     [("invalid_url", 1), ("invalid_url", 2)]),
    (jsonl([{**embed_line("a"), "method": "GET"}]), [("invalid_method", 1)]),
])
def test_a_bad_input_file_fails_the_batch_naming_each_bad_line(appliance: RunningAppliance, content: bytes,
                                                               expected: list[tuple[str, int | None]]) -> None:
    got, answer = submit(appliance, {"input_file_base64": base64.b64encode(content).decode()})
    assert got == 200, answer
    batch = answer["data"]
    assert batch["status"] == "failed" and batch["failed_at"] is not None
    assert [(e["code"], e["line"]) for e in batch["errors"]["data"]] == expected
    assert all(e["message"] for e in batch["errors"]["data"])
    assert batch["request_counts"] == {"total": 0, "completed": 0, "failed": 0}


def test_only_the_first_100_bad_lines_are_listed(appliance: RunningAppliance) -> None:
    got, answer = submit(appliance, {"input_file_base64": base64.b64encode(b"nope\n" * 150).decode()})
    assert got == 200 and len(answer["data"]["errors"]["data"]) == 100


def test_other_keys_batches_are_not_found_but_an_admin_sees_them(appliance: RunningAppliance) -> None:
    owner = appliance.create_key()
    _, created = submit(appliance, {"input_file_base64": b64([embed_line("mine")])}, key=owner)
    batch_id = created["data"]["id"]
    with appliance.client(appliance.create_key()) as stranger:
        for answer in (stranger.get(f"/v1/inference/batch/{batch_id}"),
                       stranger.post(f"/v1/inference/batch/{batch_id}/cancel")):
            assert answer.status_code == 404 and answer.json()["error"]["code"] == "NOT_FOUND"
        assert batch_id not in [b["id"] for b in stranger.get("/v1/inference/batch").json()["data"]["items"]]
        reused = stranger.post("/v1/inference/batch",
                               json={"input_file_url": f"scaigrid://file/{created['data']['input_file_id']}"})
        assert reused.status_code == 404
    with appliance.client(appliance.create_key("--permission", "admin:access",
                                               "--permission", "models:use")) as admin:
        assert admin.get(f"/v1/inference/batch/{batch_id}").status_code == 200
    with appliance.client(owner) as http:
        done = wait_batch(http, batch_id)
        again = http.post(f"/v1/inference/batch/{batch_id}/cancel")
    assert done["status"] == "completed"
    assert again.status_code == 422 and "already completed" in again.json()["error"]["message"]


@pytest.fixture(scope="module")
def redirects(served_files: str) -> Iterator[tuple[str, list[str]]]:
    """A server on 127.0.0.1 that redirects: /inside to the allowed files server, /outside to a host not on the
    list (``localhost``, a second server that records every request it gets)."""
    reached: list[str] = []

    class Secret(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            reached.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"internal metrics\n")

        def log_message(self, *args: object) -> None:
            pass

    secret = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Secret)
    secret_url = f"http://localhost:{secret.server_address[1]}/metrics"

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(302)
            self.send_header("Location", served_files + "/input.jsonl" if self.path == "/inside" else secret_url)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    redirect = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    for server in (secret, redirect):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{redirect.server_address[1]}", reached
    for server in (secret, redirect):
        server.shutdown()


def test_a_redirect_to_a_host_not_allowed_is_refused_not_followed(appliance: RunningAppliance,
                                                                  redirects: tuple[str, list[str]]) -> None:
    base, reached = redirects
    got, answer = submit(appliance, {"input_file_url": base + "/outside"})
    assert got == 422 and "'localhost' is not in this appliance's batch_url_allow" in answer["error"]["message"]
    assert reached == []  # the appliance never asked the other host


def test_a_redirect_within_the_allowed_hosts_is_followed(appliance: RunningAppliance,
                                                         redirects: tuple[str, list[str]]) -> None:
    with appliance.client(appliance.create_key()) as http_client:
        answer = http_client.post("/v1/inference/batch", json={"input_file_url": redirects[0] + "/inside"})
        assert answer.status_code == 200, answer.text
        assert wait_batch(http_client, answer.json()["data"]["id"])["request_counts"]["completed"] == 1
