"""Media tokens: ``tok_`` + 256 random bits, url-safe. The token is the credential; only its hash is kept."""

from __future__ import annotations

import hashlib
import re
import secrets

PREFIX = "tok_"
_WELL_FORMED = re.compile(r"tok_[A-Za-z0-9_-]{43}")  # what secrets.token_urlsafe(32) gives


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def is_well_formed(token: str) -> bool:
    """Only tokens of exactly our shape reach the store: no dots, no slashes, nothing to traverse with."""
    return _WELL_FORMED.fullmatch(token) is not None  # fullmatch: "$" would let a trailing newline in


def digest(token: str) -> str:
    """The stored name of a token (hex SHA-256): a leaked database or directory listing gives no working URL."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()
