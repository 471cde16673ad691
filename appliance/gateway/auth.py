"""Bearer API keys, what their users may do, and the rate limits of key, user and tenant: who may make a request
at all."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request

from appliance.gateway.ratelimit import RateLimiter
from appliance.serving.errors import ApiError, ErrorCode
from appliance.tenancy.caller import Caller, Directory, Inactive

SCOPE_NAMES = {"key": "key", "parent": "key's parent (the key that made it)", "user": "key's user",
               "tenant": "key's tenant"}


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise ApiError(ErrorCode.AUTH_TOKEN_MISSING, "No API key: send 'Authorization: Bearer sgk_…'.")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(ErrorCode.AUTH_TOKEN_MISSING, "The Authorization header must be 'Bearer <API key>'.")
    return token


def require(permission: str | None) -> Callable[[Request], Coroutine[Any, Any, Caller]]:
    """A dependency: the request's caller (key, user, tenant), verified, holding ``permission`` (None: any), within
    the rate limits of its key, user and tenant."""

    async def dependency(request: Request) -> Caller:
        token = bearer_token(request)
        directory: Directory = request.app.state.directory
        try:
            caller = directory.verify(token)
        except Inactive as exc:
            raise ApiError(ErrorCode.AUTH_TOKEN_INVALID, str(exc)) from None
        if caller is None:
            raise ApiError(ErrorCode.AUTH_TOKEN_INVALID, "The API key is unknown, revoked or expired.")
        request.state.api_key = caller.key
        request.state.caller = caller
        limited = [scope for scope in caller.scopes() if scope.rate_limit is not None]
        if limited:
            limiter: RateLimiter = request.app.state.rate_limiter
            decision, index = limiter.hit_all([(scope.id, scope.rate_limit) for scope in limited])  # type: ignore[misc]
            request.state.ratelimit_headers = decision.headers
            if not decision.allowed:
                owner = SCOPE_NAMES[limited[index].kind]
                raise ApiError(ErrorCode.RATE_LIMITED,
                               f"This {owner} may make {decision.limit} requests a minute; wait before retrying.",
                               retry_after=decision.retry_after())
        if permission is not None and not caller.can(permission):
            held = permission in caller.key.permissions or "admin:access" in caller.key.permissions
            why = f" (its user's role, {caller.role or 'none'}, does not grant it)" if held else ""
            raise ApiError(ErrorCode.AUTHZ_PERMISSION_DENIED,
                           f"This API key lacks the permission '{permission}'{why}.")
        return caller

    return dependency


authenticated = require(None)  # any valid key: e.g. to read its own usage

