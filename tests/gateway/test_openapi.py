"""The served OpenAPI document says what every route takes, answers and refuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from appliance.catalogue import parse_catalogue
from appliance.config import Settings
from appliance.gateway.app import create_app

CATALOGUE = {"model": [{"slug": "m/embed", "modality": "embedding", "engine": "sentence-transformers", "path": "."}]}


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    state = tmp_path_factory.mktemp("openapi-state")
    app = create_app(Settings(state_dir=state), parse_catalogue(CATALOGUE, base_dir=Path.cwd()))
    return app.openapi()


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, op) for path, ops in document["paths"].items() for method, op in ops.items()]


def schema_name(response: dict[str, Any], media_type: str = "application/json") -> str:
    return response["content"][media_type]["schema"]["$ref"].rsplit("/", 1)[-1]


def test_every_post_declares_its_body_and_every_route_its_errors(document: dict[str, Any]) -> None:
    assert len(operations(document)) == 67
    for method, path, op in operations(document):
        if method == "POST" and not path.endswith(("/cancel", "/load", "/unload")):  # these actions take no body
            content = op["requestBody"]["content"]
            multipart = "transcri" in path or path == "/oai/v1/files"
            assert set(content) == ({"multipart/form-data"} if multipart else {"application/json"}), path
        invalid = "400" if path.startswith("/oai/") else "422"  # OpenAI's status for a bad request, the contract's
        assert {"200", "201"} & set(op["responses"]) and {"413", invalid} <= set(op["responses"]), path
        for status, response in op["responses"].items():
            if int(status) >= 400 and (path, status) != ("/ready", "503"):  # "starting" is a state, no error
                expected = "OpenAIError" if path.startswith("/oai/") else "ErrorEnvelope"
                assert schema_name(response) == expected, (path, status)
                assert response["description"].startswith("error codes: "), (path, status)


def test_request_schemas_resolve_in_the_document(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    body = document["paths"]["/v1/inference/chat"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    chat = schemas[body["$ref"].rsplit("/", 1)[-1]]
    assert {"model", "messages"} <= set(chat["required"])
    text = str(chat)
    for ref in {part.split("'")[0] for part in text.split("#/components/schemas/")[1:]}:
        assert ref in schemas, ref
    form = document["paths"]["/v1/inference/audio/transcribe"]["post"]["requestBody"]["content"]
    assert form["multipart/form-data"]["schema"]["properties"]["file"] == {"type": "string", "format": "binary"}


def test_success_bodies_are_the_envelope_or_the_raw_bytes(document: dict[str, Any]) -> None:
    paths = document["paths"]
    assert schema_name(paths["/v1/inference/embed"]["post"]["responses"]["200"]) == "Envelope_EmbeddingResponse_"
    assert schema_name(paths["/oai/v1/embeddings"]["post"]["responses"]["200"]) == "EmbeddingResponse"
    assert set(paths["/v1/inference/chat"]["post"]["responses"]["200"]["content"]) == {"application/json",
                                                                                      "text/event-stream"}
    assert set(paths["/oai/v1/audio/speech"]["post"]["responses"]["200"]["content"]) == {
        "audio/mpeg", "audio/wav", "audio/opus", "audio/flac", "audio/aac", "audio/pcm"}
    assert set(paths["/metrics"]["get"]["responses"]["200"]["content"]) == {"text/plain"}
    assert "image/png" in paths["/v1/media/{token}"]["get"]["responses"]["200"]["content"]
    assert paths["/v1/inference/embed"]["post"]["security"] == [{"bearer": []}]
    assert "security" not in paths["/health"]["get"]
    limited = paths["/v1/inference/embed"]["post"]["responses"]["429"]
    assert "RATE_LIMITED" in limited["description"] and "Retry-After" in limited["headers"]


def test_the_responses_routes_declare_openais_400_and_the_event_stream(document: dict[str, Any]) -> None:
    paths = document["paths"]
    create = paths["/oai/v1/responses"]["post"]
    assert schema_name(create["responses"]["400"]) == "OpenAIError"
    assert set(create["responses"]["200"]["content"]) == {"application/json", "text/event-stream"}
    assert schema_name(create["responses"]["200"]) == "Response"
    for path, method in (("/oai/v1/responses/{response_id}", "get"), ("/oai/v1/responses/{response_id}", "delete"),
                         ("/oai/v1/responses/{response_id}/cancel", "post"),
                         ("/oai/v1/responses/{response_id}/input_items", "get")):
        assert {"400", "404"} <= set(paths[path][method]["responses"]), (path, method)
