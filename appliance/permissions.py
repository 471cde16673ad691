"""The permissions a key can hold (the contract's names), known to every floor: protocol, state DB, services."""

from __future__ import annotations

from typing import Literal, get_args

Permission = Literal["models:list", "models:use", "api_keys:manage", "admin:access"]
PERMISSIONS: tuple[str, ...] = get_args(Permission)
DEFAULT_PERMISSIONS = ("models:list", "models:use")
