"""OpenAI's published OpenAPI document as a JSON-Schema validator: is this answer what OpenAI says it is?

``conforms("Response", body)`` checks ``body`` against
``#/components/schemas/Response`` of ``shared/openai-openapi.yaml`` with a
real validator (jsonschema, draft 2020-12: OpenAPI 3.1's schemas are JSON
Schema), every ``$ref`` resolved in the document. The YAML (87k lines) is
parsed once per machine and kept as JSON in ``.cache/`` beside the tiny models.
Any schema of the document can be named: ``Response``, ``ResponseStreamEvent``,
``ResponseItemList``, ``CreateChatCompletionResponse``, ``CreateEmbeddingResponse``, …
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

REPO = Path(__file__).resolve().parents[2]
NAME = "openai-openapi.yaml"
URI = "urn:openai-openapi"


def document_path() -> Path:
    """The document in ``shared/`` beside the checkout (CI, the lead's /work/main), or where
    ``OPENAI_OPENAPI_YAML`` points."""
    given = os.environ.get("OPENAI_OPENAPI_YAML")
    candidates = [Path(given)] if given else []
    candidates += [parent / "shared" / NAME for parent in REPO.parents]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"{NAME} not found in a shared/ folder above {REPO}; set OPENAI_OPENAPI_YAML")


class _Plain(yaml.CSafeLoader):
    """YAML as JSON sees it: a date stays the string it was written as."""


_Plain.yaml_implicit_resolvers = {key: [(tag, regexp) for tag, regexp in resolvers
                                        if tag != "tag:yaml.org,2002:timestamp"]
                                  for key, resolvers in yaml.CSafeLoader.yaml_implicit_resolvers.items()}


@functools.cache
def document() -> dict[str, Any]:
    path = document_path()
    raw = path.read_bytes()
    cached = REPO / ".cache" / f"openai-openapi-{hashlib.sha256(raw).hexdigest()[:16]}.json"
    if cached.exists():
        return json.loads(cached.read_bytes())  # type: ignore[no-any-return]
    parsed = yaml.load(raw, Loader=_Plain)  # noqa: S506 (a safe loader)
    cached.parent.mkdir(parents=True, exist_ok=True)
    temporary = cached.with_suffix(".tmp")
    temporary.write_text(json.dumps(parsed))
    temporary.replace(cached)
    return parsed  # type: ignore[no-any-return]


@functools.cache
def _registry() -> Registry:
    return Registry().with_resource(URI, Resource(contents=document(), specification=DRAFT202012))


@functools.cache
def validator(name: str) -> jsonschema.Draft202012Validator:
    """The validator of ``#/components/schemas/{name}``."""
    if name not in document()["components"]["schemas"]:
        raise KeyError(f"no schema '{name}' in {NAME}")
    return jsonschema.Draft202012Validator({"$ref": f"{URI}#/components/schemas/{name}"}, registry=_registry())


def problems(name: str, instance: Any) -> list[str]:
    """What in ``instance`` breaks schema ``name``: each error's path and message (empty: it conforms)."""
    found = []
    for error in validator(name).iter_errors(instance):
        best = jsonschema.exceptions.best_match([error])
        where = "/".join(str(part) for part in best.absolute_path) or "(top)"
        found.append(f"{where}: {best.message[:500]}")
    return found


def conforms(name: str, instance: Any) -> None:
    """Assert that ``instance`` is a ``name`` as OpenAI's document defines it."""
    found = problems(name, instance)
    assert not found, f"not a {name} of {NAME}:\n" + "\n".join(found) + f"\n{json.dumps(instance)[:2000]}"


@functools.cache
def _event_schemas() -> dict[str, str]:
    """Each streamed event's type → the name of its schema (the branches of ``ResponseStreamEvent``)."""
    schemas = document()["components"]["schemas"]
    names = {}
    for branch in schemas["ResponseStreamEvent"]["anyOf"]:
        name = branch["$ref"].rsplit("/", 1)[-1]
        for kind in schemas[name]["properties"]["type"].get("enum", []):
            names[kind] = name
    return names


def conforms_event(event: dict[str, Any]) -> None:
    """Assert that ``event`` is the streamed event its ``type`` says (checked against that event's own schema,
    so a failure names the field rather than the union)."""
    name = _event_schemas().get(event.get("type", ""))
    assert name is not None, f"'{event.get('type')}' is not an event type of {NAME}'s ResponseStreamEvent"
    conforms(name, event)
