"""How many batch lines a model may have in flight now: wide while it has no live traffic, narrow while it has.

A model yields when more than ``batch_interactive_threshold`` live requests
wait for or run on it, and for ``batch_yield_s`` after the last of them; it
then takes ``batch_concurrency_while_live`` lines, else
``batch_concurrency_per_model``. The yield lasts past each live request so that
lines stopped for it do not come straight back between two of them. Live
requests are told from batch lines by the model's pool (the relay counts the
batch's own calls there).
"""

from __future__ import annotations

import time
from typing import Any

from appliance.config import Settings


class LiveTraffic:
    """Each model's live traffic as the batch runner sees it, and the width it allows."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        self.last_seen: dict[str, float] = {}  # model slug → monotonic time live traffic was last seen on it

    @property
    def settings(self) -> Settings:
        return self.runtime.settings  # type: ignore[no-any-return]

    def live(self, slug: str) -> int:
        """Live requests waiting for or in flight on model ``slug``."""
        entry = self.runtime.catalogue.get(slug) if slug else None
        if entry is None:
            return 0
        try:
            return int(self.runtime.supervisor.pool_for(entry).live)
        except KeyError:
            return 0

    def yielding(self, slug: str) -> bool:
        """Whether model ``slug`` has live traffic now, or had it within ``batch_yield_s``."""
        now = time.monotonic()
        if self.live(slug) > self.settings.batch_interactive_threshold:
            self.last_seen[slug] = now
            return True
        seen = self.last_seen.get(slug)
        return seen is not None and now - seen < self.settings.batch_yield_s

    def width(self, slug: str) -> int:
        """How many lines of model ``slug`` may be in flight now (lines naming no known model: the wide width)."""
        if slug and self.yielding(slug):
            return self.settings.batch_concurrency_while_live
        return self.settings.batch_concurrency_per_model
