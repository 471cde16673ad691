"""The contract every route keeps (shared/API.md): envelope, headers, auth, permissions, limits, listing."""

from __future__ import annotations

import sqlite3
import stat

import httpx
import pytest

from appliance.config import Settings
from tests.support.appliance import RunningAppliance, cli

EMBED = "openai/text-embedding-3-small"


@pytest.fixture(scope="module")
def key(embed_appliance: RunningAppliance) -> str:
    return embed_appliance.create_key()


def embed(client: httpx.Client, **body: object) -> httpx.Response:
    return client.post("/v1/inference/embed", json={"model": EMBED, "input": "hello", **body})


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == "error" and body["error"]["code"] == code
    assert body["error"]["message"].strip()
    assert body["meta"]["request_id"] == response.headers["x-scaigrid-request-id"]
    return body["error"]


# --- authentication and permissions -------------------------------------------------


def test_no_token_is_auth_token_missing(embed_appliance: RunningAppliance) -> None:
    with embed_appliance.client() as client:
        assert_error(embed(client), 401, "AUTH_TOKEN_MISSING")
        response = client.get("/v1/models", headers={"Authorization": "Basic abc"})
        assert_error(response, 401, "AUTH_TOKEN_MISSING")


def test_an_unknown_token_is_auth_token_invalid(embed_appliance: RunningAppliance) -> None:
    with embed_appliance.client("sgk_" + "x" * 43) as client:
        assert_error(embed(client), 401, "AUTH_TOKEN_INVALID")


def test_a_revoked_key_stops_working_at_once(embed_appliance: RunningAppliance) -> None:
    secret = embed_appliance.create_key()
    with embed_appliance.client(secret) as client:
        assert embed(client).status_code == 200
        listed = cli("keys", "list", state_dir=embed_appliance.state_dir).stdout
        key_id = next(line.split()[0] for line in listed.splitlines() if line.split()[1] == secret[:8] + "…")
        result = cli("keys", "revoke", key_id, state_dir=embed_appliance.state_dir)
        assert result.returncode == 0, result.stderr
        assert_error(embed(client), 401, "AUTH_TOKEN_INVALID")
    assert "revoked" in cli("keys", "list", state_dir=embed_appliance.state_dir).stdout


def test_the_key_secret_is_never_stored(embed_appliance: RunningAppliance, key: str) -> None:
    db = sqlite3.connect(embed_appliance.state_dir / "appliance.db")
    rows = db.execute("select key_hash, prefix from api_keys").fetchall()
    db.close()
    assert all(len(key_hash) == 64 and key not in key_hash for key_hash, _ in rows)


def test_permissions_are_checked_per_route(embed_appliance: RunningAppliance) -> None:
    list_only = embed_appliance.create_key("--permission", "models:list")
    use_only = embed_appliance.create_key("--permission", "models:use")
    with embed_appliance.client(list_only) as client:
        assert client.get("/v1/models").status_code == 200
        error = assert_error(embed(client), 403, "AUTHZ_PERMISSION_DENIED")
        assert "models:use" in error["message"]
    with embed_appliance.client(use_only) as client:
        assert embed(client).status_code == 200
        assert_error(client.get("/v1/models"), 403, "AUTHZ_PERMISSION_DENIED")


def test_a_key_limited_to_other_models_is_model_access_denied(embed_appliance: RunningAppliance) -> None:
    other = embed_appliance.create_key("--model", "openai/tts-1")
    by_alias = embed_appliance.create_key("--model", "scailabs/tiny-embed")
    with embed_appliance.client(other) as client:
        assert_error(embed(client), 403, "MODEL_ACCESS_DENIED")
        assert client.get("/v1/models").json()["data"]["items"] == []
        assert_error(client.get("/v1/models/openai%2Ftext-embedding-3-small"), 404, "MODEL_NOT_FOUND")
    with embed_appliance.client(by_alias) as client:
        assert embed(client).status_code == 200


def test_a_rate_limited_key_gets_429_with_retry_after_and_headers(embed_appliance: RunningAppliance) -> None:
    limited = embed_appliance.create_key("--rate-limit", "3")
    with embed_appliance.client(limited) as client:
        for _attempt in range(2):  # a minute boundary between the calls restarts the count: try again
            responses = [client.get("/v1/models") for _ in range(4)]
            if len({r.headers["x-scaigrid-ratelimit-reset"] for r in responses}) == 1:
                break
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert [r.headers["x-scaigrid-ratelimit-remaining"] for r in responses] == ["2", "1", "0", "0"]
    assert all(r.headers["x-scaigrid-ratelimit-limit"] == "3" for r in responses)
    error = assert_error(responses[3], 429, "RATE_LIMITED")
    assert error["retry_after"] >= 1
    assert responses[3].headers["retry-after"] == str(error["retry_after"])


def test_an_unlimited_key_gets_no_rate_limit_headers(embed_appliance: RunningAppliance, key: str) -> None:
    with embed_appliance.client(key) as client:
        assert "x-scaigrid-ratelimit-limit" not in client.get("/v1/models").headers


# --- request ids and headers ---------------------------------------------------------


def test_a_client_request_id_becomes_the_request_id(embed_appliance: RunningAppliance, key: str) -> None:
    with embed_appliance.client(key) as client:
        response = client.post("/v1/inference/embed", json={"model": EMBED, "input": "x"},
                               headers={"X-Request-ID": "client-trace-42"})
        assert response.headers["x-scaigrid-request-id"] == "client-trace-42"
        assert response.json()["meta"]["request_id"] == "client-trace-42"
        generated = client.get("/v1/models").headers["x-scaigrid-request-id"]
        assert generated.startswith("req_") and len(generated) > 12


def test_every_answer_has_a_request_id_even_errors_and_health(embed_appliance: RunningAppliance) -> None:
    with embed_appliance.client() as client:
        for response in (client.get("/health"), client.get("/nowhere"), client.post("/v1/inference/embed")):
            assert response.headers["x-scaigrid-request-id"]


def test_model_and_backend_headers_name_what_served(embed_appliance: RunningAppliance, key: str) -> None:
    with embed_appliance.client(key) as client:
        response = client.post("/v1/inference/embed", json={"model": "scailabs/tiny-embed", "input": "x"})
    assert response.headers["x-scaigrid-model"] == EMBED  # the slug, even when called by alias
    assert response.headers["x-scaigrid-backend"] == "sentence-transformers:openai_text-embedding-3-small"


# --- routes, bodies, models ------------------------------------------------------------


def test_an_unknown_route_is_an_enveloped_404(embed_appliance: RunningAppliance, key: str) -> None:
    with embed_appliance.client(key) as client:
        assert_error(client.get("/v1/inference/nothing"), 404, "NOT_FOUND")
        assert_error(client.get("/v1/inference/embed"), 405, "METHOD_NOT_ALLOWED")


def test_an_unknown_model_is_model_not_found(embed_appliance: RunningAppliance, key: str) -> None:
    with embed_appliance.client(key) as client:
        error = assert_error(client.post("/v1/inference/embed", json={"model": "acme/none", "input": "x"}),
                             404, "MODEL_NOT_FOUND")
    assert "acme/none" in error["message"]


@pytest.mark.parametrize(("body", "field"), [
    (b"", "body"),
    (b"{not json", "body"),
    (b"[1, 2]", "body"),
    (b'{"input": "x"}', "model"),
    (b'{"model": "openai/text-embedding-3-small"}', "input"),
    (b'{"model": "openai/text-embedding-3-small", "input": []}', "input"),
    (b'{"model": "openai/text-embedding-3-small", "input": 42}', "input"),
    (b'{"model": "openai/text-embedding-3-small", "input": ["ok", ""]}', "input[1]"),
    (b'{"model": "openai/text-embedding-3-small", "input": ["ok", 7]}', "input[1]"),
    (b'{"model": "openai/text-embedding-3-small", "input": "x", "encoding_format": "hex"}', "encoding_format"),
    (b'{"model": "openai/text-embedding-3-small", "input": "x", "dimensions": 0}', "dimensions"),
    (b'{"model": "openai/text-embedding-3-small", "input": "x", "dimensions": "many"}', "dimensions"),
])
def test_a_bad_body_is_a_validation_error_naming_the_field(embed_appliance: RunningAppliance, key: str,
                                                            body: bytes, field: str) -> None:
    with embed_appliance.client(key) as client:
        response = client.post("/v1/inference/embed", content=body, headers={"Content-Type": "application/json"})
    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert field in [detail["field"] for detail in error["details"]], error


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x"])
@pytest.mark.parametrize("path", ["/v1/inference/embed", "/oai/v1/embeddings"])
def test_a_json_route_needs_a_json_content_type(embed_appliance: RunningAppliance, key: str, path: str,
                                                content_type: str | None) -> None:
    body = b'{"model": "openai/text-embedding-3-small", "input": "hello"}'
    headers = {"Content-Type": content_type} if content_type else {}
    with embed_appliance.client(key) as client:
        response = client.post(path, content=body, headers=headers)
        assert response.status_code == (400 if path.startswith("/oai/") else 422), response.text
        if path.startswith("/oai/"):
            assert response.json()["error"]["param"] == "content-type"
        else:
            error = assert_error(response, 422, "VALIDATION_ERROR")
            assert error["details"][0]["field"] == "content-type" and "application/json" in error["message"]
        labelled = client.post(path, content=body, headers={"Content-Type": "Application/JSON; charset=utf-8"})
        assert labelled.status_code == 200, labelled.text


def test_a_body_over_the_limit_is_payload_too_large(embed_appliance: RunningAppliance, key: str) -> None:
    huge = b'{"model": "x", "input": "' + b"a" * (33 * 1024 * 1024) + b'"}'
    with embed_appliance.client(key) as client:
        assert_error(client.post("/v1/inference/embed", content=huge), 413, "PAYLOAD_TOO_LARGE")

        def chunks():  # no Content-Length: counted as it streams
            for _ in range(34):
                yield b"a" * (1024 * 1024)

        assert_error(client.post("/v1/inference/embed", content=chunks(), headers={"Content-Type": "application/json"}),
                     413, "PAYLOAD_TOO_LARGE")


def test_models_are_listed_with_filters_and_pagination(embed_appliance: RunningAppliance, key: str) -> None:
    with embed_appliance.client(key) as client:
        listing = client.get("/v1/models").json()["data"]
        item = listing["items"][0]
        assert item["slug"] == EMBED and item["modality"] == "embedding"
        assert item["health_status"] == "healthy" and item["active_backend_count"] == 1
        assert {"display_name", "context_window", "max_output_tokens", "status", "total_backend_count"} <= set(item)
        assert client.get("/v1/models", params={"modality": "chat"}).json()["data"]["items"] == []
        assert len(client.get("/v1/models", params={"modality": "embedding"}).json()["data"]["items"]) == 1
        page = client.get("/v1/models", params={"limit": 1}).json()["data"]
        assert page["has_more"] is False and page["next_cursor"] is None
        assert client.get("/v1/models", params={"cursor": EMBED}).json()["data"]["items"] == []
        assert_error(client.get("/v1/models", params={"modality": "video"}), 422, "VALIDATION_ERROR")
        assert_error(client.get("/v1/models", params={"limit": 0}), 422, "VALIDATION_ERROR")
        one = client.get("/v1/models/openai%2Ftext-embedding-3-small").json()["data"]
        assert one["slug"] == EMBED
        assert_error(client.get("/v1/models/acme%2Fnone"), 404, "MODEL_NOT_FOUND")


def test_health_ready_and_metrics_need_no_key(embed_appliance: RunningAppliance, key: str) -> None:
    with embed_appliance.client(key) as client:
        embed(client)
    with embed_appliance.client() as client:
        assert client.get("/health").json() == {"status": "ok"}
        ready = client.get("/ready").json()
        assert ready == {"status": "ready", "startup_models": {EMBED: "ready"}, "database": None}
        metrics = client.get("/metrics").text
    assert 'appliance_requests_total{model="openai/text-embedding-3-small",route="/v1/inference/embed",' \
           'status="200"}' in metrics
    assert "appliance_request_duration_seconds_bucket" in metrics
    assert 'appliance_worker_state{model="openai/text-embedding-3-small",state="ready"} 1.0' in metrics


def test_what_the_appliance_keeps_only_its_user_may_read(embed_appliance: RunningAppliance, key: str) -> None:
    state = embed_appliance.state_dir
    harness_files = {embed_appliance.log_path, embed_appliance.catalogue}  # written by this test's harness
    socket_dir = Settings(state_dir=state).socket_dir
    kept = [p for p in [*state.rglob("*"), socket_dir] if p not in harness_files]
    assert {p.name for p in kept} >= {"appliance.db", "appliance.db-wal", "appliance.db-shm"}
    for path in kept:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.is_dir():
            assert mode == 0o700, (path, oct(mode))
        elif not path.is_socket():  # a socket is reached through its 0700 directory
            assert mode & 0o077 == 0, (path, oct(mode))
    assert any(p.is_socket() for p in socket_dir.iterdir())
