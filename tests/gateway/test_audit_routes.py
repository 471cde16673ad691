"""Every mutating request that is not inference is audited: no route of the gateway escapes the table."""

from __future__ import annotations

import importlib
import pkgutil

from fastapi.routing import APIRoute

from appliance.gateway import routes
from appliance.gateway.audit import AUDITED, MUTATING
from appliance.gateway.routing import MeteredRoute


def test_every_mutating_route_but_inference_has_an_audit_action() -> None:
    modules = [importlib.import_module(f"appliance.gateway.routes.{module.name}")
               for module in pkgutil.iter_modules(routes.__path__)]
    mutating = {(method, route.path) for module in modules for route in module.router.routes
                if isinstance(route, APIRoute) and not isinstance(route, MeteredRoute)
                for method in route.methods & MUTATING}
    assert mutating == set(AUDITED)
    actions = {audited.action for audited in AUDITED.values()}
    assert {"api_key.create", "api_key.delete", "user.role_update", "tenant.update", "model.load",
            "batch.cancel"} <= actions
