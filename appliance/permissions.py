"""The permissions a key can hold (the contract's names), known to every floor: protocol, state DB, services.

What a key may do is what it holds *and* what its user's roles grant
(appliance/tenancy/roles.py); ``admin:access`` on a key stands for everything
its user's roles grant.
"""

from __future__ import annotations

from typing import Literal, get_args

Permission = Literal[
    "models:list", "models:use", "api_keys:manage", "admin:access",
    # Since tenancy (the hosted contract's names, and the box's own for box-wide work):
    "users:manage",  # users of the caller's tenant: create, change, delete, roles
    "accounting:view_own",  # the usage of every key of the caller's user
    "accounting:view_tenant",  # the usage of the caller's whole tenant
    "accounting:view_partner",  # the usage of the whole box (the box is the one partner)
    "tenants:manage",  # tenants: create, change, delete (box_admin)
    "models:manage",  # load and unload models, the box's status (box_admin)
]
PERMISSIONS: tuple[str, ...] = get_args(Permission)
DEFAULT_PERMISSIONS = ("models:list", "models:use")
