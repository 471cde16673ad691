"""Schemathesis against the live appliance's own /openapi.json, on the tiny models of every modality.

Every operation gets generated requests, valid and invalid, each sent once as
generated and once more with its ``model`` set to the tiny model that serves
the route (so the engines see the fuzz too, not only the model lookup). Every
answer must be documented (status, Content-Type, schema), enveloped (or
OpenAI-shaped under /oai), and nothing may answer 5xx. Bounded: a few
examples per operation by default; ``--fuzz-long`` runs thousands of requests.
"""

from __future__ import annotations

import json
import tomllib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
import tomli_w
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.appliance import RunningAppliance, start_appliance

EMBED, WHISPER, TTS, IMAGES, CHAT = ("openai/text-embedding-3-small", "openai/whisper-1", "openai/tts-1",
                                     "stability/sd-xl", "scailabs/tiny-chat")
RERANK = "scailabs/tiny-rerank"
SERVING = {  # the model that makes each route reach an engine
    "/v1/inference/embed": EMBED, "/oai/v1/embeddings": EMBED,
    "/v1/inference/audio/transcribe": WHISPER, "/oai/v1/audio/transcriptions": WHISPER,
    "/v1/inference/audio/synthesize": TTS, "/oai/v1/audio/speech": TTS,
    "/v1/inference/images/generate": IMAGES, "/oai/v1/images/generations": IMAGES,
    "/v1/inference/chat": CHAT, "/v1/inference/generate": CHAT,
    "/oai/v1/chat/completions": CHAT, "/oai/v1/completions": CHAT, "/oai/v1/responses": CHAT,
    "/v1/inference/rerank": RERANK, "/oai/v1/rerank": RERANK, "/oai/v2/rerank": RERANK,
}
SHORT_EXAMPLES = 12  # per operation, each sent twice
LONG_EXAMPLES = 150  # with --fuzz-long: 19 operations × 2 modes × 150 examples, many sent twice: about 8,000 requests


@pytest.fixture(scope="module")
def fuzz_appliance(tiny_catalogue: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAppliance]:
    state = tmp_path_factory.mktemp("fuzz-state")
    models = []
    for table in tomllib.loads(tiny_catalogue.read_text())["model"]:
        if table["slug"] not in (EMBED, WHISPER, TTS, IMAGES, CHAT, RERANK):
            continue
        table = {**table, "path": str((tiny_catalogue.parent / table["path"]).resolve()), "load": "startup"}
        if table["slug"] == CHAT:
            table["max_output_tokens"] = 8  # fuzzing the protocol, not the model's patience
        if table["slug"] == IMAGES:  # the smallest sizes: the fuzzer asks for up to ten images at once
            table["engine_options"] = {**table.get("engine_options", {}), "sizes": ["64x64", "128x64"]}
        models.append(table)
    catalogue = state / "models.toml"
    catalogue.write_text(tomli_w.dumps({"model": models}))
    with start_appliance(catalogue, state) as running:
        yield running


@pytest.fixture(scope="module")
def fuzz_key(fuzz_appliance: RunningAppliance) -> str:
    return fuzz_appliance.create_key()


def enveloped(_ctx: Any, response: Any, case: Any) -> bool | None:
    """A custom check: a JSON error is the contract's envelope under /v1 and elsewhere, OpenAI's under /oai; every
    answer carries its request id under both names."""
    assert response.headers["x-request-id"] == response.headers["x-scaigrid-request-id"]
    if response.status_code < 400:
        return None
    body = json.loads(response.content)
    if case.path.startswith("/oai/"):
        assert set(body) == {"error"} and body["error"]["message"] and body["error"]["type"], body
    else:
        assert body["status"] == "error" and body["error"]["code"] and body["error"]["message"], body
        assert body["meta"]["request_id"] == response.headers["x-scaigrid-request-id"][0], body
    return True


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          enveloped]


@dataclass
class Tally:
    """What the fuzzing sent and got, for the report (and docs/security.md)."""

    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)


def fuzz_operation(operation: Any, mode: GenerationMode, examples: int, send: Callable[[Any], None],
                   tally: Tally) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
              database=None, phases=[Phase.explicit, Phase.generate])  # no shrinking: report the first failure
    def run(case: Any) -> None:
        send(case)

    try:
        run()
    except Unsatisfiable:
        assert mode == GenerationMode.NEGATIVE  # nothing to get wrong in a request without parameters
    except (Exception, BaseExceptionGroup) as exc:  # every operation is fuzzed; all failures are reported together
        tally.failures.append(f"{operation.method.upper()} {operation.path} ({mode.value}): {exc}"[:3000])


def test_the_served_contract_holds_for_generated_requests(fuzz_appliance: RunningAppliance, fuzz_key: str,
                                                          request: pytest.FixtureRequest) -> None:
    examples = LONG_EXAMPLES if request.config.getoption("--fuzz-long") else SHORT_EXAMPLES
    schema = schemathesis.openapi.from_url(f"{fuzz_appliance.url}/openapi.json")
    headers = {"Authorization": f"Bearer {fuzz_key}"}
    tally = Tally()
    with requests.Session() as session:

        def call(case: Any) -> None:
            response = case.call(base_url=fuzz_appliance.url, session=session, headers=headers, timeout=120)
            tally.requests += 1
            tally.statuses[response.status_code] += 1
            case.validate_response(response, checks=CHECKS, headers=headers)

        def send(case: Any) -> None:
            call(case)
            serving = SERVING.get(case.path)
            if serving is not None and isinstance(case.body, dict) and case.body.get("model") != serving:
                case.body = {**case.body, "model": serving}
                call(case)

        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) == 67  # every route of the gateway
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                fuzz_operation(operation, mode, examples, send, tally)
    print(f"\nfuzzed {len(operations)} operations: {tally.requests} requests, statuses {dict(tally.statuses)}")
    assert not tally.failures, "\n\n".join(tally.failures)
    assert not [status for status in tally.statuses if status >= 500]
