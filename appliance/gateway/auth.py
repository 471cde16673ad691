"""Bearer API keys, their permissions and their rate limits: who may make a request at all."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request

from appliance.db.keys import ApiKey, KeyStore
from appliance.serving.errors import ApiError, ErrorCode
from appliance.gateway.ratelimit import RateLimiter


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise ApiError(ErrorCode.AUTH_TOKEN_MISSING, "No API key: send 'Authorization: Bearer sgk_…'.")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(ErrorCode.AUTH_TOKEN_MISSING, "The Authorization header must be 'Bearer <API key>'.")
    return token


def require(permission: str | None) -> Callable[[Request], Coroutine[Any, Any, ApiKey]]:
    """A dependency: the request's key, verified, holding ``permission`` (None: any), within its rate limit."""

    async def dependency(request: Request) -> ApiKey:
        token = bearer_token(request)
        keys: KeyStore = request.app.state.keys
        key = keys.verify(token)
        if key is None:
            raise ApiError(ErrorCode.AUTH_TOKEN_INVALID, "The API key is unknown, revoked or expired.")
        request.state.api_key = key
        limits = [(k.id, k.rate_limit) for k in (key, *keys.lineage(key)) if k.rate_limit is not None]
        if limits:  # its own limit, and every key's above it: a family shares its parent's requests a minute
            limiter: RateLimiter = request.app.state.rate_limiter
            decision = limiter.hit_all(limits)
            request.state.ratelimit_headers = decision.headers
            if not decision.allowed:
                whose = "This key" if decision.key_id == key.id else "The key that made this one (its requests count)"
                raise ApiError(ErrorCode.RATE_LIMITED,
                               f"{whose} may make {decision.limit} requests a minute; wait before retrying.",
                               retry_after=decision.retry_after())
        if permission is not None and permission not in key.permissions:
            raise ApiError(ErrorCode.AUTHZ_PERMISSION_DENIED, f"This API key lacks the permission '{permission}'.")
        return key

    return dependency


authenticated = require(None)  # any valid key: e.g. to read its own usage

