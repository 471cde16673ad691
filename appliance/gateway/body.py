"""Reading a JSON body into a contract model, after authentication has run."""

from __future__ import annotations

from typing import TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from appliance.gateway.errors import ApiError, ErrorCode, from_validation_error

M = TypeVar("M", bound=BaseModel)


async def parse_body(request: Request, model: type[M]) -> M:
    """Validate the body as ``model``; a bad body is a VALIDATION_ERROR naming each field."""
    return parse_json(await request.body(), model)


def parse_json(raw: bytes, model: type[M]) -> M:
    """``parse_body`` for bytes already read (a batch line's body)."""
    if not raw.strip():
        raise ApiError(ErrorCode.VALIDATION_ERROR, "body: the request needs a JSON body.",
                       details=[{"field": "body", "message": "the request needs a JSON body"}])
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise from_validation_error(exc) from None
