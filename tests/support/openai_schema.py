"""OpenAI's published OpenAPI document as a JSON-Schema validator: is this answer what OpenAI says it is?

``conforms("Response", body)`` checks ``body`` against
``#/components/schemas/Response`` of ``shared/openai-openapi.yaml`` with a
real validator (jsonschema, draft 2020-12: OpenAPI 3.1's schemas are JSON
Schema), every ``$ref`` resolved in the document; ``errors(body,
response_schema("/chat/completions", "post"))`` checks an answer against what
the document declares for a path. The YAML (87k lines) is parsed once per
machine and kept as JSON in ``.cache/`` beside the tiny models.

Some of the document's schemas still say ``nullable: true``, OpenAPI 3.0's
spelling of "or null", which 2020-12 ignores; those are read as OpenAI means
them (the SDKs generated from the document accept null there). Nothing else is
changed.
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
    """The document in ``shared/`` beside the checkout (or beside a folder above it, for a worktree), or where
    ``OPENAI_OPENAPI_YAML`` points."""
    given = os.environ.get("OPENAI_OPENAPI_YAML")
    candidates = [Path(given)] if given else []
    candidates += [parent / "shared" / NAME for parent in REPO.parents]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"no shared/{NAME} beside {REPO} or a folder above it (the contract's documents are "
                            "missing from this checkout); set OPENAI_OPENAPI_YAML")


class _Plain(yaml.CSafeLoader):
    """YAML as JSON sees it: a date stays the string it was written as."""


_Plain.yaml_implicit_resolvers = {key: [(tag, regexp) for tag, regexp in resolvers
                                        if tag != "tag:yaml.org,2002:timestamp"]
                                  for key, resolvers in yaml.CSafeLoader.yaml_implicit_resolvers.items()}


def _honour_nullable(node: Any) -> Any:
    if isinstance(node, list):
        return [_honour_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _honour_nullable(value) for key, value in node.items()}
    if node.pop("nullable", False) is not True:
        return node
    if "$ref" in node:
        ref = node.pop("$ref")
        return {**node, "anyOf": [{"$ref": ref}, {"type": "null"}]}
    if isinstance(node.get("type"), str):
        node["type"] = [node["type"], "null"]
    if isinstance(node.get("enum"), list) and None not in node["enum"]:
        node["enum"] = [*node["enum"], None]
    return node


@functools.cache
def document() -> dict[str, Any]:
    raw = document_path().read_bytes()
    cached = REPO / ".cache" / f"openai-openapi-{hashlib.sha256(raw).hexdigest()[:16]}-nullable.json"
    if cached.exists():
        return json.loads(cached.read_bytes())  # type: ignore[no-any-return]
    parsed = _honour_nullable(yaml.load(raw, Loader=_Plain))  # noqa: S506 (a safe loader)
    cached.parent.mkdir(parents=True, exist_ok=True)
    temporary = cached.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps(parsed))
    temporary.replace(cached)
    return parsed  # type: ignore[no-any-return]


@functools.cache
def _registry() -> Registry:
    return Registry().with_resource(URI, Resource(contents=document(), specification=DRAFT202012))


def component(name: str) -> dict[str, Any]:
    """The schema ``#/components/schemas/{name}``, by reference."""
    if name not in document()["components"]["schemas"]:
        raise KeyError(f"no schema '{name}' in {NAME}")
    return {"$ref": f"#/components/schemas/{name}"}


def response_schema(path: str, method: str, media_type: str = "application/json") -> dict[str, Any]:
    """The schema the document declares for a 200 of ``method path`` (OpenAI's path, without /v1)."""
    content = document()["paths"][path][method.lower()]["responses"]["200"]["content"]
    return content[media_type]["schema"]  # type: ignore[no-any-return]


def validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    """A validator of ``schema``, whose ``#/components/…`` references resolve in the document."""
    return _validator(json.dumps(schema, sort_keys=True))


@functools.cache
def _validator(schema_json: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(_rebase(json.loads(schema_json)), registry=_registry())


def _rebase(node: Any) -> Any:
    """The schema's references made absolute, into the document (also those of an inline ``oneOf``)."""
    if isinstance(node, list):
        return [_rebase(item) for item in node]
    if isinstance(node, dict):
        return {key: (URI + value if key == "$ref" and value.startswith("#") else _rebase(value))
                for key, value in node.items()}
    return node


def errors(body: Any, schema: dict[str, Any]) -> list[str]:
    """Every way ``body`` breaks ``schema``, as 'where: what' lines (empty: it is valid); the best match of each
    error of a union, so a failure names the field rather than the union."""
    found = []
    for error in sorted(validator(schema).iter_errors(body), key=lambda e: list(map(str, e.absolute_path))):
        best = jsonschema.exceptions.best_match([error])
        found.append(f"{'/'.join(map(str, best.absolute_path)) or '(body)'}: {best.message[:500]}")
    return found


def conforms(name: str, instance: Any) -> None:
    """Assert that ``instance`` is a ``name`` as OpenAI's document defines it."""
    found = errors(instance, component(name))
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
