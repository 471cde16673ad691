"""The built-in roles (the hosted contract's, plus the box's own ``box_admin``) and what each grants.

Roles are ranked; a user may hold several and counts as their highest. What a
key may do is what it holds and its user's roles grant; ``admin:access`` on a
key stands for every permission its user's roles grant.
"""

from __future__ import annotations

from collections.abc import Iterable

from appliance.permissions import PERMISSIONS

ROLES = ("tenant_viewer", "tenant_user", "tenant_admin", "box_admin")  # lowest first: a role's index is its rank

_VIEWER = frozenset({"models:list", "accounting:view_own"})
_USER = _VIEWER | {"models:use", "api_keys:manage"}
_ADMIN = _USER | {"users:manage", "accounting:view_tenant", "admin:access"}
GRANTS: dict[str, frozenset[str]] = {
    "tenant_viewer": _VIEWER,  # lists models, reads its own usage
    "tenant_user": _USER,  # uses models, manages its own keys
    "tenant_admin": _ADMIN,  # manages the tenant's users, keys, usage and audit log
    "box_admin": frozenset(PERMISSIONS),  # everything, box-wide: tenants, models, every tenant's data
}
BOX_ADMIN = "box_admin"


def unknown_roles(roles: Iterable[str]) -> list[str]:
    return [role for role in roles if role not in GRANTS]


def rank(roles: Iterable[str]) -> int:
    """The rank of the highest role (-1 for none)."""
    return max((ROLES.index(role) for role in roles if role in GRANTS), default=-1)


def highest(roles: Iterable[str]) -> str | None:
    found = rank(roles)
    return ROLES[found] if found >= 0 else None


def grants(roles: Iterable[str]) -> frozenset[str]:
    out: frozenset[str] = frozenset()
    for role in roles:
        out |= GRANTS.get(role, frozenset())
    return out


def effective(key_permissions: Iterable[str], roles: Iterable[str]) -> frozenset[str]:
    """What a key may do: what it holds within what its user's roles grant (``admin:access``: all they grant)."""
    granted = grants(roles)
    held = frozenset(key_permissions)
    if "admin:access" in held and "admin:access" in granted:
        return granted
    return held & granted
