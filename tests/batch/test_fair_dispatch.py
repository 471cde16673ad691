"""Batch lines yield to live traffic: the runner's room per model, against a real (unstarted) supervisor's pools.

A live request shows in a pool as ``waiting`` (no backend up yet) or as a
backend's ``in_flight``; here the pool's own counters stand for them, so the
decision is checked without racing real requests against a clock.
"""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import Engine

from appliance.batch.files import FileStore
from appliance.batch.intake import create_batch
from appliance.batch.runner import BatchRunner
from appliance.batch.store import BatchStore
from appliance.catalogue import load_catalogue
from appliance.config import Settings
from appliance.db.database import open_database
from appliance.supervisor.supervisor import Supervisor
from tests.batch.helpers import CHAT, EMBED, chat_line, embed_line, jsonl
from tests.conftest import catalogue_subset


@pytest.fixture
def runner(tiny_catalogue: Path, tmp_path: Path) -> BatchRunner:
    catalogue = load_catalogue(catalogue_subset(tiny_catalogue, [EMBED, CHAT], tmp_path / "models.toml"))
    settings = Settings(state_dir=tmp_path, batch_concurrency_per_model=3, batch_concurrency_while_live=1,
                        batch_interactive_threshold=1, batch_yield_s=30)
    engine: Engine = open_database(settings.effective_database_url)
    runtime = SimpleNamespace(settings=settings, catalogue=catalogue, supervisor=Supervisor(catalogue, settings))
    return BatchRunner(runtime, BatchStore(engine), FileStore(engine, tmp_path / "files"))  # type: ignore[arg-type]


def pool(runner: BatchRunner, slug: str):  # type: ignore[no-untyped-def]
    return runner.runtime.supervisor.pool_for(runner.runtime.catalogue.get(slug))


def test_an_idle_model_takes_lines_up_to_the_per_model_limit(runner: BatchRunner) -> None:
    assert runner._room(CHAT) == 3
    runner.in_flight[CHAT] = 2
    assert runner._room(CHAT) == 1 and runner._room(EMBED) == 3


def test_live_requests_beyond_the_threshold_narrow_that_model_only(runner: BatchRunner) -> None:
    pool(runner, CHAT).waiting = 1  # one live request: within the threshold
    assert runner._room(CHAT) == 3
    pool(runner, CHAT).waiting = 2  # two: the batch yields, down to batch_concurrency_while_live
    assert runner._room(CHAT) == 1 and runner._room(EMBED) == 3
    runner.in_flight[CHAT] = 1
    assert runner._room(CHAT) == 0


def test_a_model_keeps_yielding_for_batch_yield_s_after_its_last_live_request(runner: BatchRunner) -> None:
    pool(runner, CHAT).waiting = 2
    assert runner._room(CHAT) == 1
    pool(runner, CHAT).waiting = 0  # the live requests ended just now: stopped lines must not rush back
    assert runner._room(CHAT) == 1
    runner.live.last_seen[CHAT] = time.monotonic() - 31  # batch_yield_s (30) later
    assert runner._room(CHAT) == 3


def test_while_yielding_the_newest_chat_lines_beyond_the_live_width_are_stopped(runner: BatchRunner) -> None:
    async def scenario() -> list[bool]:
        lines = [asyncio.ensure_future(asyncio.sleep(30)) for _ in range(3)]  # three chat lines in flight
        runner.stoppable[CHAT] = dict.fromkeys(lines)  # type: ignore[arg-type]
        runner.in_flight[CHAT] = 3
        pool(runner, CHAT).waiting = 3 + 2  # the pool counts the runner's three lines, and two live requests arrive
        pool(runner, CHAT).background = 3
        watcher = asyncio.ensure_future(runner._yield_to_live_traffic())
        await asyncio.wait(lines, timeout=1, return_when=asyncio.ALL_COMPLETED)
        watcher.cancel()
        cancelled = [line.cancelled() for line in lines]
        for line in lines:
            line.cancel()
        return cancelled

    assert asyncio.run(scenario()) == [False, True, True]  # the oldest keeps running: it is nearest its end


def test_the_runner_does_not_count_its_own_lines_as_live_traffic(runner: BatchRunner) -> None:
    runner.in_flight[CHAT] = 2
    pool(runner, CHAT).waiting = 2  # the runner's own two lines, waiting for the model to load
    pool(runner, CHAT).background = 2  # as the relay counts them
    assert runner._room(CHAT) == 1


def test_a_model_that_said_not_now_is_paused(runner: BatchRunner) -> None:
    runner.paused_until[CHAT] = time.monotonic() + 60
    assert runner._room(CHAT) == 0 and runner._room(EMBED) == 3


def test_lines_naming_no_known_model_still_run_to_fail_fast(runner: BatchRunner) -> None:
    assert runner._slug("no/such") == "" and runner._room("") == 3


def test_the_lines_of_a_yielding_model_do_not_hold_back_another_models_lines_behind_them(
        runner: BatchRunner, tmp_path: Path) -> None:
    lines = [chat_line(f"chat{n}") for n in range(300)] + [embed_line("embed")]  # more than one look's worth
    stored = runner.files.save("key_a", "batch", "in.jsonl", io.BytesIO(jsonl(lines)), 10**6)
    assert stored is not None
    create_batch(runner.store.engine, key_id="key_a", surface="scaigrid", endpoint=None, input_file_id=stored.id,
                 input_path=runner.files.path(stored.id), window="24h", metadata=None)
    pool(runner, CHAT).waiting = 2  # live traffic on the chat model: it yields, down to one line
    runner.in_flight[CHAT] = 1  # which it has

    async def dispatch() -> tuple[int, dict[str, int]]:
        started = await runner._dispatch()
        in_flight = dict(runner.in_flight)
        for task in list(runner.tasks):  # what was claimed is enough; the line need not run here
            task.cancel()
        await asyncio.gather(*runner.tasks, return_exceptions=True)
        return started, in_flight

    started, in_flight = asyncio.run(dispatch())
    assert started == 1 and in_flight == {CHAT: 1, EMBED: 1}  # the embed line started, past 300 chat lines
