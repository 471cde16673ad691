"""`appliance …`: one command line, a module per group of sub-commands.

serve, demo, tiny-models (serve.py) · keys (keys.py) · tenants (tenants.py) · users (users.py) ·
audit (audit.py) · usage (usage.py) · models, logs (models.py) · batches (batches.py) · bundle (bundle.py) ·
tls (tls.py)
"""

from __future__ import annotations

import typer

from appliance.cli import serve
from appliance.cli.audit import audit_app
from appliance.cli.batches import batches_app
from appliance.cli.bundle import bundle_app
from appliance.cli.keys import keys_app
from appliance.cli.models import logs, models_app
from appliance.cli.tenants import tenants_app
from appliance.cli.tls import tls_app
from appliance.cli.usage import usage
from appliance.cli.users import users_app

app = typer.Typer(help="The inference appliance: the ScaiGrid inference API on this box.", no_args_is_help=True)
app.command()(serve.serve)
app.command("tiny-models")(serve.tiny_models)
app.command()(serve.demo)
app.command()(usage)
app.command()(logs)
app.add_typer(keys_app, name="keys")
app.add_typer(tenants_app, name="tenants")
app.add_typer(users_app, name="users")
app.add_typer(audit_app, name="audit")
app.add_typer(models_app, name="models")
app.add_typer(bundle_app, name="bundle")
app.add_typer(batches_app, name="batches")
app.add_typer(tls_app, name="tls")

__all__ = ["app"]
