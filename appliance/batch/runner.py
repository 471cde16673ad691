"""The batch runner: a task in each gateway that claims queued lines and runs each through its live service.

Fair to live traffic: per model it keeps as many lines in flight as
``fairness.py`` allows, wide while the model has no live traffic, narrow while
it has. The chat and generate lines beyond a narrowed width are stopped at once
(their calls are cancelled, so vLLM drops the sequences) and queued again: they
run once, later, and are metered once. A local vLLM gets batch lines with a low
priority, so its scheduler admits live requests first; it does not stop a
running sequence for them, hence the stopping here. Durable: a line is claimed in the DB
before it runs and its result committed there; claims are renewed while the
runner lives, and a dead runner's claims are re-queued (see store.py).

Cheap per line: lines are claimed in groups (one transaction), their input read
in contiguous spans, their results committed in groups, and a batch's key looked
up once every ``KEY_FRESH_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections import Counter

from appliance.batch import endpoints
from appliance.batch.fairness import LiveTraffic
from appliance.batch.files import FileStore
from appliance.batch.results import finalize
from appliance.batch.store import BatchStore, LineRef, LineResult, by_batch
from appliance.catalogue import Catalogue
from appliance.config import Settings
from appliance.db.batches import BatchRow
from appliance.db.keys import KeyStore
from appliance.metrics import BATCH_LINES, BATCH_QUEUED
from appliance.serving import metering
from appliance.serving.context import Call, Surface
from appliance.serving.errors import ApiError, ErrorCode
from appliance.serving.runtime import Runtime
from appliance.tenancy.caller import Caller, Inactive

log = logging.getLogger("appliance.batch")

IDLE_S = 1.0  # between looks for work when there was none
HOUSEKEEPING_S = 2.0  # at most, between renewals, re-queues, expiries and finalizations (a third of stale_s if less)
# A live request would be told to retry these; a batch line waits and runs again, until its batch's window ends.
RETRIED = frozenset({ErrorCode.MODEL_UNAVAILABLE, ErrorCode.BACKEND_RATE_LIMITED})
MAX_PAUSE_S = 30.0
KEY_FRESH_S = 1.0  # a batch's key is looked up again after this long: a revoked key stops its batch within it
GATHER_S = 0.02  # results wait this long for others to be committed with them
CANDIDATES = 256  # queued lines looked at per dispatch
WATCH_S = 0.01  # how often the models with batch lines in flight are checked for live traffic
SPAN_GAP = 64 * 1024  # input lines closer than this are read in one span
SPAN_MAX = 4 * 1024 * 1024
PARTIALS_SWEEP_S = 300.0  # how often partial files nobody writes any more are removed (and once at start)


class BatchRunner:
    def __init__(self, runtime: Runtime, store: BatchStore, files: FileStore) -> None:
        self.runtime = runtime
        self.store = store
        self.files = files
        self.owner = "runner_" + secrets.token_hex(8)
        self.in_flight: Counter[str] = Counter()  # lines of this runner in flight, by model slug
        self.tasks: set[asyncio.Task[None]] = set()
        self.stoppable: dict[str, dict[asyncio.Task[None], LineRef]] = {}  # chat/generate lines in flight, by slug
        self.stopped: set[asyncio.Task[None]] = set()  # cancelled to yield to live traffic: they go back to the queue
        self.live = LiveTraffic(runtime)
        self.wake = asyncio.Event()
        self._batches: dict[str, BatchRow] = {}
        self.paused_until: dict[str, float] = {}  # model slug → monotonic time it may be tried again
        self.idle_again = False  # the last line in flight just ended: a batch may be ready to finalize now
        self.queue_empty = False  # the last look found no queued line (else no batch can be ready to finalize)
        self.results: list[LineResult] = []  # answered, not yet committed
        self.yielded: list[LineRef] = []  # stopped for live traffic, not yet queued again
        self.results_ready = asyncio.Event()
        self._keys: dict[str, tuple[float, Caller | str]] = {}  # key id → (monotonic time looked up, caller)
        self._partials_swept_at: float | None = None
        self._key_lookup = asyncio.Lock()

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    async def run(self) -> None:
        """Dispatch until cancelled; the lines in flight then finish (or are re-queued once this runner is gone)."""
        last_housekeeping = 0.0
        every = min(HOUSEKEEPING_S, self.settings.batch_stale_s / 3)
        writer = asyncio.get_running_loop().create_task(self._write_results(), name="batch results")
        watcher = asyncio.get_running_loop().create_task(self._yield_to_live_traffic(), name="batch yield")
        try:
            while True:
                if time.monotonic() - last_housekeeping >= every or self.idle_again:
                    self.idle_again = False
                    await self._housekeeping()
                    last_housekeeping = time.monotonic()
                started = await self._dispatch()
                if not started:
                    self.wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.wake.wait(), IDLE_S)
        finally:
            writer.cancel()
            watcher.cancel()
            for task in list(self.tasks):
                task.cancel()
            with contextlib.suppress(Exception):  # what was answered is kept; the rest goes back at once
                await self._flush()
                await asyncio.to_thread(self.store.release, self.owner)

    # --- dispatch --------------------------------------------------------------------------------------------

    def _slug(self, model: str) -> str:
        catalogue: Catalogue = self.runtime.catalogue
        entry = catalogue.get(model)
        return entry.slug if entry is not None else ""

    def _room(self, slug: str) -> int:
        """How many more lines of model ``slug`` may start now (lines naming no known model fail fast: room)."""
        if self.paused_until.get(slug, 0.0) > time.monotonic():
            return 0  # the model answered "not now"; its lines wait
        return max(0, self.live.width(slug) - self.in_flight[slug])

    async def _dispatch(self) -> int:
        room: dict[str, int] = {}
        wanted: list[LineRef] = []
        full: set[str] = set()  # model names (as lines give them) with no room now
        seen: set[tuple[str, int]] = set()
        for _look in range(2):  # a second look past the lines of full models: they must not block the others
            refs = await asyncio.to_thread(self.store.candidates, CANDIDATES, full)
            if not full:
                self.queue_empty = not refs
            for ref in refs:
                if (ref.batch_id, ref.line_no) in seen:
                    continue
                seen.add((ref.batch_id, ref.line_no))
                slug = self._slug(ref.model)
                if slug not in room:
                    room[slug] = self._room(slug)
                    if self.in_flight[slug] and room[slug] < max(1, self.live.width(slug) // 4):
                        room[slug] = 0  # wait until a quarter is free: one claim per group of lines, not per line
                if room[slug] > 0:
                    room[slug] -= 1
                    wanted.append(ref)
                else:
                    full.add(ref.model)
            if len(refs) < CANDIDATES or not full:
                break
        if not wanted:
            return 0
        claimed = await asyncio.to_thread(self._claim_and_read, wanted)
        for ref, raw in claimed:
            slug = self._slug(ref.model)
            self.in_flight[slug] += 1
            task = asyncio.get_running_loop().create_task(self._run_line(ref, slug, raw))
            self.tasks.add(task)
            if self._stoppable(slug):
                self.stoppable.setdefault(slug, {})[task] = ref
        return len(claimed)

    def _stoppable(self, slug: str) -> bool:
        """Chat and generate lines: cancelling their call makes the engine drop the sequence, saving its work."""
        entry = self.runtime.catalogue.get(slug) if slug else None
        return entry is not None and entry.modality == "chat"

    async def _yield_to_live_traffic(self) -> None:
        """Watch the chat models for live traffic (so a batch that arrives meanwhile starts narrow), and while
        one yields, stop its lines beyond ``batch_concurrency_while_live``, newest first."""
        while True:
            await asyncio.sleep(WATCH_S)
            keep = self.settings.batch_concurrency_while_live
            catalogue: Catalogue = self.runtime.catalogue
            for slug in [entry.slug for entry in catalogue if entry.modality == "chat"]:
                if not self.live.yielding(slug):
                    continue
                lines = self.stoppable.get(slug)
                if not lines or len(lines) <= keep:
                    continue
                running = [task for task in lines if task not in self.stopped]
                for task in running[keep:]:  # the oldest are nearest their end
                    self.stopped.add(task)
                    task.cancel()

    def _claim_and_read(self, wanted: list[LineRef]) -> list[tuple[LineRef, bytes]]:
        """Claim the lines (one transaction) and read their input lines, in contiguous spans of each file."""
        claimed = self.store.claim(self.owner, wanted)
        out: list[tuple[LineRef, bytes]] = []
        for batch_id, group in by_batch(claimed).items():
            batch = self._batches.get(batch_id) or self._remember(self.store.get(batch_id, None))
            try:
                if batch is None:
                    raise LookupError(f"batch {batch_id} is gone")
                out += self._read_lines(batch.input_file_id, group)
            except Exception:  # each line then fails as the appliance's fault, logged once here
                log.exception("batch %s: could not read its input file", batch_id)
                out += [(ref, b"") for ref in group]
        return out

    def _read_lines(self, file_id: str, refs: list[LineRef]) -> list[tuple[LineRef, bytes]]:
        out = []
        refs = sorted(refs, key=lambda ref: ref.offset)
        with self.files.path(file_id).open("rb") as fh:
            start = 0
            while start < len(refs):
                end = start + 1  # grow the span while the next line is near and the span small
                while (end < len(refs) and refs[end].offset - (refs[end - 1].offset + refs[end - 1].length) < SPAN_GAP
                       and refs[end].offset + refs[end].length - refs[start].offset <= SPAN_MAX):
                    end += 1
                base = refs[start].offset
                fh.seek(base)
                span = fh.read(refs[end - 1].offset + refs[end - 1].length - base)
                out += [(ref, span[ref.offset - base:ref.offset - base + ref.length]) for ref in refs[start:end]]
                start = end
        return out

    async def _batch(self, batch_id: str) -> BatchRow | None:
        batch = self._batches.get(batch_id)  # cached when its lines were claimed
        return batch if batch is not None else self._remember(await asyncio.to_thread(self.store.get, batch_id, None))

    def _remember(self, batch: BatchRow | None) -> BatchRow | None:
        if batch is not None:
            if len(self._batches) > 1000:  # batches of other runners' finalizations linger: bound them
                self._batches.clear()
            self._batches[batch.id] = batch
        return batch

    async def _key(self, key_id: str) -> Caller | str:
        """The batch's caller (its key, user and tenant), looked up again once it is ``KEY_FRESH_S`` old (revoked or
        changed meanwhile); why it may not run now (a sentence) otherwise."""
        seen = self._keys.get(key_id)
        if seen is None or time.monotonic() - seen[0] > KEY_FRESH_S:
            async with self._key_lookup:  # one lookup for all the lines that start together, not one each
                seen = self._keys.get(key_id)
                if seen is None or time.monotonic() - seen[0] > KEY_FRESH_S:
                    seen = (time.monotonic(), await asyncio.to_thread(self._caller, key_id))
                    if len(self._keys) > 1000:
                        self._keys.clear()
                    self._keys[key_id] = seen
        return seen[1]

    def _caller(self, key_id: str) -> Caller | str:
        keys: KeyStore = self.runtime.keys
        key = keys.get(key_id)
        if key is None or not key.active():
            return "The batch's API key was revoked or has expired."
        try:
            return self.runtime.directory.caller_of(key)  # type: ignore[no-any-return]
        except Inactive as exc:
            return str(exc)

    async def _run_line(self, ref: LineRef, slug: str, raw: bytes) -> None:
        try:
            batch = await self._batch(ref.batch_id)
            if batch is None:
                return
            ok, status, request_id, result, retry_after = await self._call(batch, slug, ref.url, raw)
            if retry_after is not None:
                self.paused_until[slug] = time.monotonic() + min(MAX_PAUSE_S, max(1.0, retry_after))
                await asyncio.to_thread(self.store.requeue, self.owner, [ref])
                return
            self.results.append(LineResult(ref, ok, status, request_id, result))
            self.results_ready.set()
        except asyncio.CancelledError:
            if asyncio.current_task() not in self.stopped:
                raise  # the runner stops: its claims are released
            BATCH_LINES.labels("yielded").inc()
            self.yielded.append(ref)  # queued again with the next group of results
            self.results_ready.set()
        except Exception:  # the DB away: the claim goes stale and another runner (or this one) runs it again
            log.exception("batch %s line %d: could not run or record it", ref.batch_id, ref.line_no)
        finally:
            task = asyncio.current_task()
            self.in_flight[slug] -= 1
            self.tasks.discard(task)  # type: ignore[arg-type]
            self._unstoppable(slug)
            self.stopped.discard(task)  # type: ignore[arg-type]
            self.wake.set()

    async def _write_results(self) -> None:
        """Commit answered lines in groups: those that finish within ``GATHER_S`` of each other share one
        transaction."""
        while True:
            await self.results_ready.wait()
            await asyncio.sleep(GATHER_S)
            self.results_ready.clear()
            await self._flush()

    async def _flush(self) -> None:
        group, self.results = self.results, []
        yielded, self.yielded = self.yielded, []
        if yielded:
            try:
                await asyncio.to_thread(self.store.requeue, self.owner, yielded)
            except Exception:  # the DB away: their claims go stale and are re-queued then
                log.exception("could not queue %d yielded batch line(s) again", len(yielded))
        if not group:
            return
        try:
            done, failed = await asyncio.to_thread(self.store.commit_results, self.owner, group)
        except Exception:  # the DB away: kept, and tried again with the next group
            log.exception("could not commit %d batch result(s); trying again", len(group))
            self.results = group + self.results
            await asyncio.sleep(1.0)
            self.results_ready.set()
            return
        BATCH_LINES.labels("done").inc(done)
        BATCH_LINES.labels("failed").inc(failed)
        if not any(self.in_flight.values()) and not self.results and self.queue_empty:
            self.idle_again = True  # a batch may be ready to finalize now (not after each line of a narrow batch)
            self.wake.set()

    def _unstoppable(self, slug: str) -> None:
        """The current line of model ``slug`` is no longer stopped for live traffic."""
        self.stoppable.get(slug, {}).pop(asyncio.current_task(), None)  # type: ignore[arg-type]

    async def _call(self, batch: BatchRow, slug: str, url: str, raw: bytes) -> tuple[bool, int, str, str, float | None]:
        """Run one line through its endpoint's service, metered like a live request.

        (ok, status, request id, answer or error JSON, and the seconds to wait when it is to be run again).
        """
        caller = await self._key(batch.key_id)
        base = (self.settings.public_base_url or f"http://{self.settings.host}:{self.settings.port}")
        if isinstance(caller, str):
            return False, 401, "", _error(ApiError(ErrorCode.AUTH_TOKEN_INVALID, caller)), None
        call = Call.for_line(self.runtime, caller, Surface(batch.surface), base.rstrip("/") + "/")
        started = time.perf_counter()
        retry_after: float | None = None
        try:
            if not raw:
                raise LookupError("the line's input could not be read")  # logged when its file was read
            answer = await endpoints.endpoint_for(batch.surface, url).answer(call, raw)
            ok, status, result = True, 200, answer.decode()
        except asyncio.CancelledError:  # stopped (or the runner stops): nothing charged, no usage row; it runs again
            await asyncio.shield(metering.settle(self.runtime, call.fields, 503))
            raise
        except ApiError as exc:
            call.error_code = exc.code.value
            ok, status, result = False, exc.status_code, _error(exc)
            if exc.code in RETRIED:
                retry_after = float(exc.retry_after or 1)
        except Exception:
            log.exception("batch %s: a line failed unexpectedly", batch.id)
            error = ApiError(ErrorCode.INTERNAL_ERROR, "The appliance failed to run this line; it is logged.")
            call.error_code = error.code.value
            ok, status, result = False, 500, _error(error)
        self._unstoppable(slug)  # answered: it runs (and is metered) once
        if retry_after is None:  # one usage row per line: the attempt that gave its result
            await metering.finish(self.runtime, call.fields, endpoints.route_of(batch.surface, url), status, started)
        else:
            await metering.settle(self.runtime, call.fields, status)
        return ok, status, call.request_id, result, retry_after

    # --- housekeeping ----------------------------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        try:
            await asyncio.to_thread(self._keep_house)
        except Exception:
            log.exception("batch housekeeping failed; it is tried again shortly")

    def _keep_house(self) -> None:
        stale_s = self.settings.batch_stale_s
        self.store.renew(self.owner)
        if self._partials_swept_at is None or time.monotonic() - self._partials_swept_at > PARTIALS_SWEEP_S:
            self._partials_swept_at = time.monotonic()
            if swept := self.files.sweep_partials():
                log.info("removed %d partial batch file(s) left by an interrupted upload or finalization", swept)
        requeued = self.store.requeue_stale(stale_s)
        if requeued:
            log.warning("re-queued %d batch line(s) of a runner that stopped", requeued)
        self.store.expire_overdue()
        self.store.close_cancelled()
        retention_s = self.settings.batch_retention_days * 86400
        for batch in self.store.ready_to_finalize(stale_s):
            if self.store.claim_finalize(self.owner, batch, stale_s):
                fresh = self.store.get(batch.id, None)
                if fresh is not None and finalize(self.store, self.files, self.runtime.media, fresh, self.owner,
                                                  retention_s):
                    self._batches.pop(batch.id, None)
                    log.info("batch %s finalized", batch.id)
        self.files.delete(self.files.older_than(self.settings.batch_retention_days))
        for batch in self.store.expired_for_retention(self.settings.batch_retention_days):
            self.files.delete([batch.input_file_id, batch.output_file_id or "", batch.error_file_id or ""])
            self.store.delete(batch.id)
            log.info("batch %s and its files deleted after the retention period", batch.id)
        BATCH_QUEUED.set(self.store.queued_total())


def _error(exc: ApiError) -> str:
    return json.dumps({"code": exc.code.value, "message": exc.message}, separators=(",", ":"))
