"""`appliance usage`: the summaries of GET /v1/accounting/usage/summary, from the state DB."""

from __future__ import annotations

from typing import Annotated

import typer

from appliance.cli.support import StateDirOption, fail, open_state_database, settings_of

GROUPS = ("model", "key", "backend", "user", "tenant")
SUMMARY_PERIODS = ("hour", "day", "week", "month", "total")


def usage(
    group_by: Annotated[str, typer.Option(help="model, key, backend, user or tenant")] = "model",
    period: Annotated[str, typer.Option(help="hour, day, week, month or total: from the start of the current one")]
    = "day",
    key: Annotated[str | None, typer.Option(help="only this key's usage (its id, key_…)")] = None,
    user: Annotated[str | None, typer.Option(help="only this user's usage (usr_…)")] = None,
    tenant: Annotated[str | None, typer.Option(help="only this tenant's usage (ten_…)")] = None,
    state_dir: StateDirOption = None,
) -> None:
    """Usage summed by model, key, backend, user or tenant: the numbers of GET /v1/accounting/usage/summary."""
    from datetime import UTC, datetime

    from appliance.accounting.periods import period_start
    from appliance.accounting.store import UsageFilter, UsageStore

    if group_by not in GROUPS:
        raise fail(f"--group-by must be one of {', '.join(GROUPS)}")
    if period not in SUMMARY_PERIODS:
        raise fail(f"--period must be one of {', '.join(SUMMARY_PERIODS)}")
    store = UsageStore(open_state_database(settings_of(None, state_dir).effective_database_url))
    start = period_start(period, datetime.now(UTC))
    rows = store.summary(UsageFilter(start=start, key_id=key, user_id=user, tenant_id=tenant), group_by)
    since = f"since {start:%Y-%m-%d %H:%M} UTC" if start else "in total"
    typer.echo(f"usage by {group_by}, {since}")
    typer.echo(f"{group_by:40} {'requests':>8} {'in tok':>9} {'out tok':>9} {'total tok':>10} {'images':>7} "
               f"{'audio s':>9} {'chars':>8} {'cost':>12}")
    for row in rows:
        typer.echo(f"{str(row['group_key'] or '-'):40} {row['request_count']:>8} {row['input_tokens']:>9} "
                   f"{row['output_tokens']:>9} {row['total_tokens']:>10} {row['images']:>7} "
                   f"{row['audio_seconds']:>9.1f} {row['characters']:>8} {row['total_cost']:>12.6f}")
