"""The envelope and error codes: one shape for every answer, the right HTTP status for every code."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
from pydantic import ValidationError

from appliance.catalogue import parse_catalogue
from appliance.config import load_settings
from appliance.gateway.app import create_gateway
from appliance.gateway.errors import error_response, stream_error_body
from appliance.protocol.fields import field_path
from appliance.serving.context import Surface
from appliance.serving.errors import HTTP_STATUS, ApiError, ErrorCode, context_length_exceeded, \
    from_validation_error
from appliance.protocol.embeddings import EmbeddingRequest


def test_every_code_of_the_contract_has_its_status() -> None:
    expected = {
        "AUTH_TOKEN_MISSING": 401, "AUTH_TOKEN_INVALID": 401, "AUTHZ_PERMISSION_DENIED": 403,
        "VALIDATION_ERROR": 422, "MODEL_NOT_FOUND": 404, "MODEL_ACCESS_DENIED": 403, "MODEL_UNAVAILABLE": 503,
        "BACKEND_ERROR": 502, "BACKEND_TIMEOUT": 504, "RATE_LIMITED": 429, "BUDGET_EXCEEDED": 429,
        "QUOTA_EXCEEDED": 429, "BACKEND_RATE_LIMITED": 429, "NOT_FOUND": 404, "PAYLOAD_TOO_LARGE": 413, "INTERNAL_ERROR": 500,
    }
    for code, status in expected.items():
        assert HTTP_STATUS[ErrorCode(code)] == status


def test_an_error_is_enveloped_with_retry_after_in_body_and_header() -> None:
    response = error_response(ApiError(ErrorCode.RATE_LIMITED, "slow down", retry_after=7), Surface.SCAIGRID, "req_1")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.body == (b'{"status":"error","error":{"code":"RATE_LIMITED","message":"slow down",'
                             b'"retry_after":7},"meta":{"request_id":"req_1"}}')


def test_the_openai_surface_gets_openai_shaped_errors_with_openai_s_400() -> None:
    err = ApiError(ErrorCode.VALIDATION_ERROR, "input: bad", details=[{"field": "input", "message": "bad"}])
    response = error_response(err, Surface.OPENAI, "req_1")
    assert response.status_code == 400
    assert response.body == (b'{"error":{"message":"input: bad","type":"invalid_request_error","param":"input",'
                             b'"code":null}}')
    assert error_response(err, Surface.SCAIGRID, "req_1").status_code == 422  # the hosted contract's


# What api.openai.com answers for each (docs/clients.md has the table).
OPENAI_PAIRS = {
    ErrorCode.AUTH_TOKEN_MISSING: (401, "invalid_request_error", None),
    ErrorCode.AUTH_TOKEN_INVALID: (401, "invalid_request_error", "invalid_api_key"),
    ErrorCode.AUTHZ_PERMISSION_DENIED: (403, "request_forbidden", None),
    ErrorCode.MODEL_ACCESS_DENIED: (403, "request_forbidden", None),
    ErrorCode.VALIDATION_ERROR: (400, "invalid_request_error", None),
    ErrorCode.MODEL_NOT_FOUND: (404, "invalid_request_error", "model_not_found"),
    ErrorCode.NOT_FOUND: (404, "invalid_request_error", None),
    ErrorCode.RATE_LIMITED: (429, "requests", "rate_limit_exceeded"),
    ErrorCode.BACKEND_RATE_LIMITED: (429, "requests", "rate_limit_exceeded"),
    ErrorCode.BUDGET_EXCEEDED: (429, "insufficient_quota", "insufficient_quota"),
    ErrorCode.QUOTA_EXCEEDED: (429, "insufficient_quota", "insufficient_quota"),
    ErrorCode.INTERNAL_ERROR: (500, "server_error", None),
    ErrorCode.BACKEND_ERROR: (502, "server_error", None),
    ErrorCode.MODEL_UNAVAILABLE: (503, "service_unavailable_error", "server_is_overloaded"),
    ErrorCode.BACKEND_TIMEOUT: (504, "server_error", None),
}


def test_each_code_gets_openai_s_status_type_and_code_on_the_openai_surface() -> None:
    for code in ErrorCode:
        response = error_response(ApiError(code, "what went wrong"), Surface.OPENAI, "req_1")
        error = json.loads(response.body)["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"] == "what went wrong"
        if code in OPENAI_PAIRS:
            assert (response.status_code, error["type"], error["code"]) == OPENAI_PAIRS[code], code


def test_an_over_long_prompt_is_context_length_exceeded_with_the_limit_and_the_length() -> None:
    err = context_length_exceeded("messages", 2048, 2049, at_least=True)
    openai = error_response(err, Surface.OPENAI, "r")
    error = json.loads(openai.body)["error"]
    assert openai.status_code == 400 and error["code"] == "context_length_exceeded" and error["param"] == "messages"
    assert "maximum context length is 2048 tokens" in error["message"] and "at least 2049 tokens" in error["message"]
    scaigrid = json.loads(error_response(err, Surface.SCAIGRID, "r").body)["error"]
    assert scaigrid["code"] == "VALIDATION_ERROR" and scaigrid["details"][0]["field"] == "messages"
    with_completion = context_length_exceeded("prompt", 512, 400, completion=200).message
    assert "you requested 600 tokens (400 in the prompt, 200 in the completion)" in with_completion


def test_a_stream_that_fails_mid_way_says_so_in_its_surface_s_shape() -> None:
    err = ApiError(ErrorCode.BACKEND_ERROR, "the engine died")
    assert stream_error_body(err, Surface.SCAIGRID) == {"code": "BACKEND_ERROR", "message": "the engine died"}
    assert stream_error_body(err, Surface.OPENAI) == {"error": {"message": "the engine died", "type": "server_error",
                                                                "param": None, "code": None}}


def test_every_error_carries_the_request_id_under_both_names(tmp_path: Path) -> None:
    async def scenario() -> None:
        settings = load_settings(None, state_dir=tmp_path)
        gateway = create_gateway(settings, parse_catalogue({"model": []}))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://gw") as client:
            for path in ("/v1/models", "/oai/v1/models", "/nowhere"):
                response = await client.get(path)
                assert response.status_code in (401, 404)
                assert response.headers["x-request-id"] == response.headers["x-scaigrid-request-id"]
            given = await client.get("/oai/v1/models", headers={"X-Request-ID": "mine-1"})
            assert given.headers["x-request-id"] == "mine-1"

    asyncio.run(scenario())


def test_an_openai_path_on_the_main_surface_is_an_openai_404_naming_oai_v1(tmp_path: Path) -> None:
    async def scenario() -> None:
        settings = load_settings(None, state_dir=tmp_path)
        gateway = create_gateway(settings, parse_catalogue({"model": []}))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://gw") as client:
            for method, path in (("POST", "/v1/chat/completions"), ("POST", "/v1/embeddings"),
                                 ("GET", "/v1/files"), ("POST", "/v1/audio/speech")):
                response = await client.request(method, path, json={})
                assert response.status_code == 404
                error = response.json()["error"]
                assert error["type"] == "invalid_request_error" and "/oai/v1" + path[3:] in error["message"]
            scaigrid = await client.get("/v1/no-such-thing")
            assert scaigrid.status_code == 404 and scaigrid.json()["status"] == "error"

    asyncio.run(scenario())


def test_the_openai_surface_tells_the_sdk_not_to_retry_what_cannot_succeed() -> None:
    budget = error_response(ApiError(ErrorCode.BUDGET_EXCEEDED, "spent", retry_after=60), Surface.OPENAI, "r")
    busy = error_response(ApiError(ErrorCode.BACKEND_RATE_LIMITED, "busy", retry_after=5), Surface.OPENAI, "r")
    assert budget.headers["x-should-retry"] == "false"
    assert "x-should-retry" not in busy.headers and busy.headers["retry-after"] == "5"
    assert "x-should-retry" not in error_response(ApiError(ErrorCode.BUDGET_EXCEEDED, "spent"), Surface.SCAIGRID, "r").headers


def test_field_paths_read_like_the_request() -> None:
    assert field_path(("body", "messages", 0, "role")) == "messages[0].role"
    assert field_path(("body",)) == "body"
    assert field_path(()) == "body"


def test_validation_details_name_each_field() -> None:
    try:
        EmbeddingRequest.model_validate_json(b'{"input": ["a", ""], "dimensions": 0}')
    except ValidationError as exc:
        err = from_validation_error(exc)
    assert err.code == ErrorCode.VALIDATION_ERROR
    fields = {d["field"]: d["message"] for d in err.details or []}
    assert fields.keys() == {"model", "input[1]", "dimensions"}
    assert fields["model"] == "this field is required"
    assert err.message.startswith("model: this field is required (and 2 more)")


def test_malformed_json_is_said_plainly() -> None:
    try:
        EmbeddingRequest.model_validate_json(b'{"model": ')
    except ValidationError as exc:
        err = from_validation_error(exc)
    assert err.details == [{"field": "body", "message": "the body is not valid JSON"}]


def test_one_field_path_helper_skips_sources_union_branches_and_tags() -> None:
    from appliance.protocol.fields import field_path as shared

    assert field_path is shared
    assert shared(("body", "input", "list[constrained-str]", 1)) == "input[1]"
    assert shared(("body", "stop", "str")) == "stop"
    assert shared(("messages", 2, "user", "content", "function-after[_check(), str]")) == "messages[2].user.content"
    assert shared(("messages", 2, "user", "content"), tags={"user"}) == "messages[2].content"
    assert shared(("query", "limit")) == "limit" and shared(("aliases", 0)) == "aliases[0]"
    assert shared((), empty="(entry)") == "(entry)"
