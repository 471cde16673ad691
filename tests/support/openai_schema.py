"""OpenAI's published OpenAPI document (shared/openai-openapi.yaml) as a JSON-Schema validator of answers.

The document is OpenAPI 3.1 (JSON Schema 2020-12), but some of its schemas
still say ``nullable: true``, OpenAPI 3.0's spelling of "or null", which 2020-12
ignores; those are read as OpenAI means them (the SDKs generated from the
document accept null there). Nothing else is changed.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

REPO = Path(__file__).resolve().parents[2]
NAME = "openai-openapi.yaml"
URI = "urn:openai-openapi"


def document_path() -> Path:
    """shared/openai-openapi.yaml beside the checkout (or beside a folder above it, for a worktree)."""
    for folder in REPO.parents:
        candidate = folder / "shared" / NAME
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no shared/{NAME} beside {REPO} or a folder above it: the contract's documents are "
                            "missing from this checkout")


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
    with document_path().open() as fh:
        return _honour_nullable(yaml.load(fh, Loader=yaml.CSafeLoader))  # type: ignore[no-any-return]


@functools.cache
def _registry() -> Registry:
    return Registry().with_resource(URI, Resource.from_contents(document(), default_specification=DRAFT202012))


def validator(schema: dict[str, Any]) -> Draft202012Validator:
    """A validator of ``schema``, whose ``#/components/…`` references resolve in the document."""
    return Draft202012Validator(_rebase(schema), registry=_registry())


def _rebase(node: Any) -> Any:
    """The schema's references made absolute, into the document (also those of an inline ``oneOf``)."""
    if isinstance(node, list):
        return [_rebase(item) for item in node]
    if isinstance(node, dict):
        return {key: (URI + value if key == "$ref" and value.startswith("#") else _rebase(value))
                for key, value in node.items()}
    return node


def response_schema(path: str, method: str, media_type: str = "application/json") -> dict[str, Any]:
    """The schema the document declares for a 200 of ``method path`` (OpenAI's path, without /v1)."""
    content = document()["paths"][path][method.lower()]["responses"]["200"]["content"]
    return content[media_type]["schema"]  # type: ignore[no-any-return]


def errors(body: Any, schema: dict[str, Any]) -> list[str]:
    """Every way ``body`` breaks ``schema``, as 'where: what' lines (empty: it is valid)."""
    return [f"{'/'.join(map(str, error.absolute_path)) or '(body)'}: {error.message[:300]}"
            for error in sorted(validator(schema).iter_errors(body), key=lambda e: list(map(str, e.absolute_path)))]


def component(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}
