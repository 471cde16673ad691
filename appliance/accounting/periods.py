"""Budget units and periods, and where a period starts and rolls over (UTC)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

UNITS = ("tokens", "images", "audio_seconds", "cost")
PERIODS = ("day", "week", "month", "total")
TOTAL = "total"


def period_start(period: str, now: datetime) -> datetime | None:
    """When the period holding ``now`` began (``hour`` too, for usage summaries); None for ``total``."""
    if period == "hour":
        return now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    key, _end = period_bounds(period, now)
    return None if key == TOTAL else datetime.fromisoformat(key).replace(tzinfo=UTC)


def period_bounds(period: str, now: datetime) -> tuple[str, datetime | None]:
    """The period's key (its first day, ISO, or "total") and when the next one starts (None: never)."""
    now = now.astimezone(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        start, end = day, day + timedelta(days=1)
    elif period == "week":  # ISO weeks: Monday to Monday
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    elif period == "month":
        start = day.replace(day=1)
        end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    elif period == TOTAL:
        return TOTAL, None
    else:
        raise ValueError(f"unknown budget period {period!r}; known: {', '.join(PERIODS)}")
    return start.date().isoformat(), end
