"""Reading what a request carries into contract models: its JSON body (after authentication) or its query."""

from __future__ import annotations

from typing import TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from appliance.serving.body import parse_json
from appliance.serving.errors import from_errors, validation_error

M = TypeVar("M", bound=BaseModel)


def is_json_media_type(content_type: str | None) -> bool:
    """``application/json`` (any parameters, any case) or a ``+json`` type such as ``application/merge-patch+json``."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (media_type.startswith("application/") and media_type.endswith("+json"))


async def json_body(request: Request) -> bytes:
    """The raw body of a JSON route: labelled ``application/json`` and not empty, else a VALIDATION_ERROR."""
    content_type = request.headers.get("content-type")
    if not is_json_media_type(content_type):
        given = f"'{content_type}'" if content_type else "none"
        raise validation_error("content-type", f"this route takes a JSON body sent as 'Content-Type: "
                                               f"application/json'; the request's Content-Type is {given}")
    raw = await request.body()
    if not raw.strip():
        raise validation_error("body", "the request needs a JSON body")
    return raw


async def parse_body(request: Request, model: type[M]) -> M:
    """Validate the body as ``model``; a bad body is a VALIDATION_ERROR naming each field."""
    return parse_json(await json_body(request), model)


def parse_query(request: Request, model: type[M]) -> M:
    """The query string as ``model``; a bad parameter is a VALIDATION_ERROR naming it."""
    try:
        return model.model_validate(dict(request.query_params))
    except ValidationError as exc:
        raise from_errors(list(exc.errors())) from None
