"""`appliance tls init|import|status`: the box's HTTPS certificate (docs/operations.md, docs/trusting-the-box.md)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Annotated

import typer

from appliance.cli.support import StateDirOption, fail, settings_of
from appliance.config import Settings
from appliance.tls.store import DEFAULT_DIR, TlsPaths

tls_app = typer.Typer(help="The HTTPS certificate: make the box's own, import yours, show the one in service.",
                      no_args_is_help=True)

ConfigFile = Annotated[Path | None, typer.Option("--config", "-c", envvar="APPLIANCE_CONFIG",
                                                 help="models.toml, for its [settings] (tls_cert_file, …)")]
DirOption = Annotated[Path | None, typer.Option("--dir", help="the TLS directory (cert.pem, key.pem, ca.pem); "
                                                "default: tls_cert_file's, else /etc/appliance/tls")]
NameOption = Annotated[list[str] | None, typer.Option("--name", help="a host name clients use (repeatable)")]
IpOption = Annotated[list[str] | None, typer.Option("--ip", help="an address clients use (repeatable)")]


def _settings(config: Path | None, state_dir: Path | None = None) -> Settings:
    return settings_of(config, state_dir)


def _paths(directory: Path | None, settings: Settings, ca_dir: Path | None = None) -> TlsPaths:
    chosen = directory or (settings.tls_cert_file.parent if settings.tls_cert_file else DEFAULT_DIR)
    return TlsPaths.of(chosen, ca_dir)


@tls_app.command("init")
def tls_init(
    directory: DirOption = None,
    ca_dir: Annotated[Path | None, typer.Option("--ca-dir", help="the CA's key and certificate, kept apart from "
                                                "what the server reads; default DIR/ca (root's alone)")] = None,
    name: NameOption = None,
    ip: IpOption = None,
    renew: Annotated[bool, typer.Option(help="issue a new server certificate even if the one in place is "
                                        "fine")] = False,
    days: Annotated[int, typer.Option(min=1, max=825, help="the server certificate's lifetime")] = 365,
    config: ConfigFile = None,
) -> None:
    """Make the box's CA (once) and a server certificate it signs, for NAMEs (default: its host names and LAN
    addresses). Run again, it renews the certificate when it nears expiry or lacks a name; it never replaces
    one you imported unless --renew."""
    from appliance.tls.lifecycle import init
    from appliance.tls.pem import TlsError

    paths = _paths(directory, _settings(config), ca_dir)
    try:
        result = init(paths, [*(name or []), *(ip or [])], renew=renew, days=days)
    except (TlsError, ValueError) as exc:
        raise fail(str(exc)) from None
    except PermissionError as exc:
        raise fail(f"{exc.filename}: permission denied (run as root on an installed box)") from None
    if result.created_ca:
        typer.echo(f"created the CA in {paths.ca_directory} (its key stays there; clients trust {paths.ca})")
    if result.issued:
        typer.echo(f"issued a server certificate ({result.reason}): {paths.cert}")
    else:
        typer.echo(f"kept {paths.cert}: {result.reason}")
    typer.echo(f"  names: {', '.join(result.facts.names)}")
    typer.echo(f"  valid until {result.facts.not_after:%Y-%m-%d}; a running appliance loads it on SIGHUP "
               "(systemctl reload appliance)")


@tls_app.command("import")
def tls_import(
    cert: Annotated[Path, typer.Argument(help="the server certificate (PEM; its intermediates may follow)")],
    key: Annotated[Path, typer.Argument(help="its private key (PEM, unencrypted, not readable by others)")],
    chain: Annotated[Path | None, typer.Argument(help="the issuing CA certificates, if not in CERT")] = None,
    directory: DirOption = None,
    name: NameOption = None,
    ip: IpOption = None,
    reload: Annotated[bool, typer.Option(help="ask the running appliance to load it (SIGHUP)")] = True,
    config: ConfigFile = None,
    state_dir: StateDirOption = None,
) -> None:
    """Check, then install your own certificate: the key matches, the chain is complete, the names cover the box's
    (--name/--ip, else public_base_url's host, else the box's host name), it is valid now. Anything wrong is
    refused with the reason, and the certificate in service stays."""
    from appliance.tls.lifecycle import check, import_certificate
    from appliance.tls.pem import TlsError

    settings = _settings(config, state_dir)
    paths = _paths(directory, settings)
    try:
        installable = check(cert, key, chain, [*(name or []), *(ip or [])], settings.public_base_url)
    except TlsError as exc:
        raise fail(f"not imported, the certificate in service stays: {exc}") from None
    try:
        facts = import_certificate(paths, installable)
    except PermissionError as exc:
        raise fail(f"{exc.filename}: permission denied (run as root on an installed box)") from None
    for note in installable.notes:
        typer.echo(f"note: {note}")
    typer.echo(f"installed in {paths.directory}: {facts.subject} ({', '.join(facts.names)}), issued by "
               f"{facts.issuer}, valid until {facts.not_after:%Y-%m-%d}")
    if reload:
        typer.echo(_ask_to_reload(settings))


def _ask_to_reload(settings: Settings) -> str:
    from appliance.gateway.app import PID_FILE

    pid_file = settings.state_dir / PID_FILE
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError):
        return "no running appliance found for this state dir; it serves the certificate when it starts"
    return f"asked the appliance (pid {pid}) to load it (SIGHUP); connections already open keep the old one"


@tls_app.command("status")
def tls_status(
    directory: DirOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the status as JSON")] = False,
    config: ConfigFile = None,
) -> None:
    """The installed certificate: its names, issuer and expiry (what GET /tls/status says of the one served)."""
    from appliance.tls.lifecycle import status
    from appliance.tls.pem import TlsError

    settings = _settings(config)
    paths = _paths(directory, settings)
    try:
        report = status(paths, settings.tls_expiry_warn_days)
    except TlsError as exc:
        raise fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(report.model_dump(mode="json"), indent=2))
        return
    assert report.not_after is not None and report.days_left is not None
    state = ("EXPIRED" if report.days_left < 0 else
             f"expires in {report.days_left:.0f} days" + (" — renew it soon" if report.expiring else ""))
    typer.echo(f"certificate  {paths.cert}")
    typer.echo(f"names        {', '.join(report.names)}")
    typer.echo(f"subject      {report.subject}")
    typer.echo(f"issuer       {report.issuer}{' (self-signed)' if report.self_signed else ''}")
    typer.echo(f"valid        {report.not_before:%Y-%m-%d} to {report.not_after:%Y-%m-%d %H:%M} UTC ({state})")
    typer.echo(f"sha256       {report.sha256}")
    if report.ca_url:
        from cryptography.hazmat.primitives import hashes

        from appliance.tls.pem import load_certificates

        ca = load_certificates(paths.ca, "CA certificate")[0]
        typer.echo(f"clients      trust {paths.ca} (served at /ca.pem)")
        typer.echo(f"ca sha256    {ca.fingerprint(hashes.SHA256()).hex(':').upper()} (compare a downloaded copy)")
    else:
        typer.echo("clients      no ca.pem here: the issuing CA is one clients already trust")
