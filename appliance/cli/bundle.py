"""`appliance bundle …`: create, verify, keygen."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from appliance.bundle.manifest import BundleError, human_size
from appliance.bundle.targets import TARGETS
from appliance.cli.support import fail as _fail

bundle_app = typer.Typer(help="Offline bundles: code, wheels and models for an air-gapped box.", no_args_is_help=True)


def _progress(line: str) -> None:
    typer.echo(line, err=True)


@bundle_app.command("create")
def create(
    out: Annotated[Path, typer.Argument(help="the bundle to write, e.g. appliance-bundle.tar")],
    config: Annotated[Path, typer.Option("--config", "-c", help="the catalogue whose models go in")],
    no_models: Annotated[bool, typer.Option("--no-models", help="only a record of the models, no weights")] = False,
    target: Annotated[str, typer.Option(help=f"the box's kind: {' or '.join(TARGETS)}")] = "cpu",
    sign: Annotated[Path | None, typer.Option("--sign", help="Ed25519 private key (PEM) to sign with")] = None,
    engines: Annotated[bool, typer.Option(help="the engines' libraries; --no-engines: the gateway's only")] = True,
    vllm: Annotated[bool, typer.Option(help="vLLM's own environment")] = True,
    source: Annotated[Path | None, typer.Option(help="the project checkout; default the one this runs from")] = None,
) -> None:
    """Make a bundle (on a connected machine): wheels for TARGET, the catalogue's models, the unit, a manifest."""
    from appliance.bundle.create import BundleOptions, create_bundle, default_source
    from appliance.catalogue import CatalogueError, load_catalogue

    if target not in TARGETS:
        raise _fail(f"unknown target '{target}'; one of {', '.join(TARGETS)}")
    source = source or default_source()
    if source is None:
        raise _fail("this appliance was not installed from a checkout; give --source DIR")
    try:
        catalogue = load_catalogue(config, check_paths=False)
        create_bundle(out, config, catalogue, BundleOptions(target, not no_models, engines, vllm), source,
                      sign, _progress)
    except (BundleError, CatalogueError) as exc:
        raise _fail(str(exc)) from None


CONFIGURED_PUBKEY = Path("/etc/appliance/bundle.pub")  # scripts/install keeps the first install's key here
NOT_AUTHENTICATED = 2  # every file matches the manifest, but nothing says who made it


@bundle_app.command("verify")
def verify(
    bundle: Annotated[Path, typer.Argument(help="the bundle to check")],
    pubkey: Annotated[Path | None, typer.Option("--pubkey", help="the signer's public key; default "
                                                f"{CONFIGURED_PUBKEY} when it exists")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no line per file")] = False,
) -> None:
    """Check every file of BUNDLE against its manifest, and its signature by the key.

    Exits 0 only when the signature is checked too; without a key it exits 2, however intact the files.
    """
    from appliance.bundle.verify import verify_bundle

    if pubkey is None and CONFIGURED_PUBKEY.is_file():
        pubkey = CONFIGURED_PUBKEY
    try:
        manifest = verify_bundle(bundle, pubkey, progress=None if quiet else _progress)
    except BundleError as exc:
        raise _fail(str(exc)) from None
    models = ", ".join(f"{m.slug}{'' if m.included else ' (not included)'}" for m in manifest.models) or "none"
    about = (f"{len(manifest.files)} files, {human_size(manifest.total_bytes)}; appliance "
             f"{manifest.appliance_version} for {manifest.target} / Python {manifest.python} / {manifest.machine}; "
             f"models: {models}")
    if pubkey is not None:
        typer.echo(f"{bundle}: ok, signature ok ({pubkey}); {about}")
        return
    # The hashes prove the copy is whole, not who made it: whoever changed a file could rewrite the manifest.
    typer.echo(f"{bundle}: NOT AUTHENTICATED: every file matches the bundle's own manifest, but no public key "
               f"was given to check who made it (--pubkey KEY); {about}")
    raise typer.Exit(code=NOT_AUTHENTICATED)


@bundle_app.command("keygen")
def keygen(key: Annotated[Path, typer.Argument(help="private key file to write; the public key goes to KEY.pub")]
           ) -> None:
    """A new Ed25519 key pair for `bundle create --sign` and `bundle verify --pubkey`."""
    from appliance.bundle.signing import generate_keypair

    try:
        public = generate_keypair(key)
    except FileExistsError:
        raise _fail(f"{key} exists; not overwriting a key") from None
    typer.echo(f"private key {key} (keep it on the connected machine), public key {public} (give it to the boxes)")
