"""`appliance models import`: the command line of appliance/model_import.py."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from appliance.cli.support import cli_event, fail, state_engine


def import_command(
    source: Annotated[Path, typer.Argument(help="the model: a directory, or a tar of one")],
    slug: Annotated[str, typer.Option(help="what clients will call it, e.g. acme/embed-large")],
    engine: Annotated[str, typer.Option(help="vllm, transformers, sentence-transformers, diffusers, "
                                             "faster-whisper or piper")],
    modality: Annotated[str, typer.Option(help="chat, embedding, image, transcription, speech or rerank")],
    config: Annotated[Path, typer.Option("--config", "-c", envvar="APPLIANCE_CONFIG",
                                         help="the catalogue to add it to")] = Path("models.toml"),
    models_dir: Annotated[Path | None, typer.Option(help="where the weights go; default the models_dir "
                                                         "setting, STATE_DIR/models")] = None,
    alias: Annotated[list[str] | None, typer.Option("--alias", help="repeatable")] = None,
    load: Annotated[str, typer.Option(help="startup or on-demand")] = "on-demand",
    gpu_memory_gb: Annotated[float, typer.Option(help="what it holds when loaded")] = 0.0,
    state_dir: Annotated[Path | None, typer.Option("--state-dir", envvar="APPLIANCE_STATE_DIR")] = None,
) -> None:
    """Copy a model from a disk into the models dir (hash-checked) and add it to the catalogue."""
    from appliance.config import load_settings
    from appliance.model_import import ImportProblem, ImportRequest, import_model

    settings = load_settings(config, state_dir=state_dir, models_dir=models_dir)
    extra = {"load": load, "gpu_memory_gb": gpu_memory_gb, **({"aliases": alias} if alias else {})}
    request = ImportRequest(source, slug, engine, modality, config, settings.effective_models_dir, extra)
    try:
        final = import_model(request, progress=lambda line: typer.echo(f"  {line}", err=True))
    except ImportProblem as exc:
        raise fail(str(exc)) from None
    from appliance.tenancy.audit import AuditLog

    AuditLog(state_engine(state_dir, config)).record(cli_event("catalogue.import", "model", slug,
                                                               details={"config": str(config), "path": str(final)}))
    typer.echo(f"imported {slug} into {final} and added it to {config}. To serve it without a restart: "
               f"appliance models reload --config {config} (or: systemctl reload appliance)")
