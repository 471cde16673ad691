"""What a person sees: engines write to STATE/logs/<model>.log, the console keeps one line per model."""

from __future__ import annotations

from tests.support.appliance import RunningAppliance, cli

EMBED = "openai/text-embedding-3-small"


def test_the_engine_writes_to_its_own_log_not_the_console(embed_appliance: RunningAppliance) -> None:
    engine = embed_appliance.engine_log(EMBED)
    assert f"serving {EMBED} on" in engine  # the worker's own start line
    console = embed_appliance.log()
    assert f"serving {EMBED} on" not in console
    # One line per start (the shared appliance may have been unloaded and loaded again by the admin tests).
    starts = sum(f"{EMBED}: started worker" in line for line in console.splitlines())
    readies = sum(f"{EMBED} ready in" in line for line in console.splitlines())
    assert starts >= 1 and readies == starts


def test_appliance_logs_shows_a_models_log(embed_appliance: RunningAppliance) -> None:
    shown = cli("logs", EMBED, "--lines", "5", "--config", str(embed_appliance.catalogue),
                state_dir=embed_appliance.state_dir)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() and shown.stdout.strip().splitlines()[-1] in embed_appliance.engine_log(EMBED)
    by_alias = cli("logs", "scailabs/tiny-embed", "--config", str(embed_appliance.catalogue),
                   state_dir=embed_appliance.state_dir)
    assert by_alias.returncode == 0 and f"serving {EMBED}" in by_alias.stdout
    missing = cli("logs", "nobody/none", state_dir=embed_appliance.state_dir)
    assert missing.returncode == 1 and "openai--text-embedding-3-small" in missing.stderr
