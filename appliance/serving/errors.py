"""The contract's error codes and ``ApiError``: what any service raises, whichever surface it answers on.

How an error looks on the wire (the ScaiGrid envelope, or OpenAI's shape) is
the gateway's business (``gateway/errors.py``); here is only what went wrong.
"""

from __future__ import annotations

from collections.abc import Collection
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from appliance.protocol.fields import field_path


class ErrorCode(StrEnum):
    AUTH_TOKEN_MISSING = "AUTH_TOKEN_MISSING"
    AUTH_TOKEN_INVALID = "AUTH_TOKEN_INVALID"
    AUTHZ_PERMISSION_DENIED = "AUTHZ_PERMISSION_DENIED"
    VALIDATION_ERROR = "VALIDATION_ERROR"
    MODEL_NOT_FOUND = "MODEL_NOT_FOUND"
    MODEL_ACCESS_DENIED = "MODEL_ACCESS_DENIED"
    MODEL_UNAVAILABLE = "MODEL_UNAVAILABLE"
    BACKEND_ERROR = "BACKEND_ERROR"
    BACKEND_TIMEOUT = "BACKEND_TIMEOUT"
    RATE_LIMITED = "RATE_LIMITED"
    BUDGET_EXCEEDED = "BUDGET_EXCEEDED"
    QUOTA_EXCEEDED = "QUOTA_EXCEEDED"
    BACKEND_RATE_LIMITED = "BACKEND_RATE_LIMITED"
    NOT_FOUND = "NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    INTERNAL_ERROR = "INTERNAL_ERROR"


HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.AUTH_TOKEN_MISSING: 401,
    ErrorCode.AUTH_TOKEN_INVALID: 401,
    ErrorCode.AUTHZ_PERMISSION_DENIED: 403,
    ErrorCode.VALIDATION_ERROR: 422,
    ErrorCode.MODEL_NOT_FOUND: 404,
    ErrorCode.MODEL_ACCESS_DENIED: 403,
    ErrorCode.MODEL_UNAVAILABLE: 503,
    ErrorCode.BACKEND_ERROR: 502,
    ErrorCode.BACKEND_TIMEOUT: 504,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.BUDGET_EXCEEDED: 429,
    ErrorCode.QUOTA_EXCEEDED: 429,
    ErrorCode.BACKEND_RATE_LIMITED: 429,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.INTERNAL_ERROR: 500,
}

class Reason(StrEnum):
    """What went wrong, finer than the code, where a client acts on it: an over-long prompt is a VALIDATION_ERROR
    on ``/v1`` and OpenAI's ``context_length_exceeded`` on ``/oai/v1`` (what LangChain and agents trim history on)."""

    CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"


# Codes a retry cannot help (the docs' retry guidance).
NOT_RETRYABLE = frozenset({
    ErrorCode.AUTH_TOKEN_MISSING, ErrorCode.AUTH_TOKEN_INVALID, ErrorCode.AUTHZ_PERMISSION_DENIED,
    ErrorCode.VALIDATION_ERROR, ErrorCode.MODEL_NOT_FOUND, ErrorCode.MODEL_ACCESS_DENIED,
    ErrorCode.BUDGET_EXCEEDED, ErrorCode.QUOTA_EXCEEDED,
})


class ClientGone(Exception):
    """The client went away before its call reached an engine (it waited for a slot): nobody to answer, nothing
    to charge. The gateway records it as HTTP 499, "client closed request"."""


class ApiError(Exception):
    """An error answer: raised anywhere in a call, rendered by the surface it came in on."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        details: list[dict[str, str]] | None = None,
        retry_after: int | None = None,
        headers: dict[str, str] | None = None,
        reason: Reason | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self.retry_after = retry_after
        self.headers = headers or {}
        self.reason = reason

    @property
    def status_code(self) -> int:
        return HTTP_STATUS[self.code]

    def to_dict(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code.value, "message": self.message}
        if self.details is not None:
            error["details"] = self.details
        if self.retry_after is not None:
            error["retry_after"] = self.retry_after
        return error


def validation_error(field: str, message: str) -> ApiError:
    """A VALIDATION_ERROR about one field, the message a sentence for a person."""
    return ApiError(ErrorCode.VALIDATION_ERROR, f"{field}: {message}", details=[{"field": field, "message": message}])


def context_length_exceeded(field: str, limit: int | None, prompt: int | None, completion: int | None = None,
                            at_least: bool = False) -> ApiError:
    """A prompt (or an input) longer than the model's context window: a VALIDATION_ERROR naming the field, in
    OpenAI's words (clients match on them), with the model's limit and the prompt's length where known."""
    what = "input" if field.startswith("input") else field
    limit_text = f"{limit} tokens" if limit else "its context window"
    if prompt is not None and completion:
        length = (f"However, you requested {prompt + completion} tokens ({prompt} in the {what}, {completion} in the "
                  f"completion). Please reduce the length of the {what} or completion.")
    elif prompt is not None:
        length = (f"However, your {what} resulted in {'at least ' if at_least else ''}{prompt} tokens. "
                  f"Please reduce the length of the {what}.")
    else:
        verb = "are" if what == "messages" else "is"
        length = f"However, your {what} {verb} longer than that. Please reduce the length of the {what}."
    message = f"This model's maximum context length is {limit_text}. {length}"
    return ApiError(ErrorCode.VALIDATION_ERROR, f"{field}: {message}", details=[{"field": field, "message": message}],
                    reason=Reason.CONTEXT_LENGTH_EXCEEDED)


def errors_to_details(errors: list[dict[str, Any]], tags: Collection[str] = ()) -> list[dict[str, str]]:
    details: list[dict[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for err in errors:
        field = field_path(err.get("loc", ()), tags)
        if err.get("type") == "json_invalid":
            message = "the body is not valid JSON"
        elif err.get("type") == "missing":
            message = "this field is required"
        else:  # a validator's own sentence, without pydantic's "Value error, " in front of it
            message = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        if (field, message) not in seen:
            seen.add((field, message))
            details.append({"field": field, "message": message})
    return details


def from_validation_error(exc: ValidationError) -> ApiError:
    return from_errors(list(exc.errors()))


def from_errors(errors: list[dict[str, Any]], tags: Collection[str] = ()) -> ApiError:
    """A VALIDATION_ERROR for pydantic-style errors: the first in the message, all in ``details``."""
    details = errors_to_details(errors, tags)
    first = details[0] if details else {"field": "body", "message": "invalid request"}
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    return ApiError(ErrorCode.VALIDATION_ERROR, f"{first['field']}: {first['message']}{more}", details=details)


def disk_nearly_full(free: int, reserve: int) -> ApiError:
    """QUOTA_EXCEEDED for a write that would leave the disk less room than the state DB needs."""
    return ApiError(ErrorCode.QUOTA_EXCEEDED, f"The appliance's disk is nearly full ({free / (1 << 20):.1f} MB free, "
                                              f"{reserve / (1 << 20):.1f} MB kept for its database); delete files "
                                              "or ask the operator to free space.")
