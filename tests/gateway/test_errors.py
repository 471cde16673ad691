"""The envelope and error codes: one shape for every answer, the right HTTP status for every code."""

from __future__ import annotations

from pydantic import ValidationError

from appliance.gateway.errors import error_response
from appliance.protocol.fields import field_path
from appliance.serving.context import Surface
from appliance.serving.errors import HTTP_STATUS, ApiError, ErrorCode, from_validation_error
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


def test_the_openai_surface_gets_openai_shaped_errors() -> None:
    err = ApiError(ErrorCode.VALIDATION_ERROR, "input: bad", details=[{"field": "input", "message": "bad"}])
    response = error_response(err, Surface.OPENAI, "req_1")
    assert response.status_code == 422
    assert response.body == (b'{"error":{"message":"input: bad","type":"invalid_request_error","param":"input",'
                             b'"code":"validation_error"}}')


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
