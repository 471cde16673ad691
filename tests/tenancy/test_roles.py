"""What each role grants, and what a key of a user in that role may do."""

from __future__ import annotations

import pytest

from appliance.permissions import PERMISSIONS
from appliance.tenancy.roles import GRANTS, ROLES, effective, grants, highest, rank


def test_each_role_grants_what_the_one_below_it_does_and_more() -> None:
    for lower, higher in zip(ROLES, ROLES[1:]):
        assert GRANTS[lower] < GRANTS[higher], (lower, higher)
    assert GRANTS["box_admin"] == frozenset(PERMISSIONS)
    assert "models:use" not in GRANTS["tenant_viewer"] and "users:manage" not in GRANTS["tenant_user"]
    assert {"tenants:manage", "models:manage", "accounting:view_partner"}.isdisjoint(GRANTS["tenant_admin"])


@pytest.mark.parametrize(("held", "roles", "may"), [
    (["models:use", "users:manage"], ["tenant_user"], {"models:use"}),  # the role caps the key
    (["admin:access"], ["tenant_admin"], set(GRANTS["tenant_admin"])),  # admin:access: all the role grants
    (["admin:access"], ["tenant_user"], set()),  # a role without it: nothing it stands for
    (["models:list"], ["tenant_viewer", "tenant_admin"], {"models:list"}),
    (["models:use"], [], set()),
])
def test_a_key_may_do_what_it_holds_within_its_users_roles(held: list[str], roles: list[str], may: set[str]) -> None:
    assert effective(held, roles) == may


def test_rank_is_the_highest_role() -> None:
    assert rank(["tenant_user", "tenant_admin"]) == 2 and highest(["tenant_viewer", "box_admin"]) == "box_admin"
    assert rank([]) == -1 and grants(["nope"]) == frozenset()
