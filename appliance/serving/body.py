"""Request bodies as contract models: from a live request's bytes, or from a batch line in one pass.

A batch line (``{"custom_id", "method", "url", "body": {…}}``) is validated
whole from its bytes, its ``body`` as the endpoint's request model, the way a
live request's body is: no decode, re-encode and parse again. Errors name the
field inside ``body``, as a live request's would.
"""

from __future__ import annotations

import functools
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from appliance.serving.errors import from_errors, validation_error

M = TypeVar("M", bound=BaseModel)


def parse_json(raw: bytes, model: type[M]) -> M:
    """Validate ``raw`` as ``model``; a bad body is a VALIDATION_ERROR naming each field."""
    if not raw.strip():
        raise validation_error("body", "the request needs a JSON body")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise from_errors(list(exc.errors())) from None


class Line(BaseModel, Generic[M]):
    """A batch line as its body is read: the other fields were checked when the batch was accepted."""

    model_config = ConfigDict(extra="ignore")

    body: M


@functools.cache
def line_adapter(model: type[BaseModel]) -> TypeAdapter[Any]:
    return TypeAdapter(Line[model])  # type: ignore[valid-type]


def parse_line(raw: bytes, model: type[M]) -> M:
    """The ``body`` of a batch line, validated as ``model`` straight from the line's bytes."""
    try:
        return line_adapter(model).validate_json(raw).body  # type: ignore[no-any-return]
    except ValidationError as exc:
        raise from_errors(strip_line(exc.errors())) from None


def strip_line(errors: list[Any]) -> list[dict[str, Any]]:
    """A line's errors as its body's: ``("body", "messages", 0)`` → ``("messages", 0)``."""
    out = []
    for err in errors:
        loc = tuple(err.get("loc", ()))
        out.append({**err, "loc": loc[1:] if loc[:1] == ("body",) else loc})
    return out
