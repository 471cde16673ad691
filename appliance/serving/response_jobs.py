"""Background responses: durable jobs, each claimed by one gateway's runner, that survive the gateway's death.

A background response is stored ``queued`` and claimed by this gateway's
runner in the same write, then run at once as a task. The runner renews its
claims every few seconds; the claims of a runner that stopped renewing (a
killed gateway) go stale and another runner (or this one, restarted) takes the
job over, as the batch runner takes over a dead runner's lines. A job taken
over runs again from its stored request, unless a client may already have seen
part of its answer (a streamed one whose output events were sent): then it
fails, saying so, rather than answer twice differently. A job whose gateway
died too often fails as well. Nothing runs twice to completion: a result is
written only by the runner that owns the job, only while it is queued or in
progress.

The events of a streamed background response are kept (``response_events``),
so a client can pick the stream up again with ``starting_after``, on any
gateway: from memory where the job runs, from the DB elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from appliance.db.keys import ApiKey
from appliance.protocol.responses import ResponseRequest
from appliance.serving import metering
from appliance.serving.context import Call, Surface
from appliance.serving.errors import ApiError, ErrorCode
from appliance.serving.response_chat import dumps
from appliance.serving.response_events import TERMINAL, EventStream

from appliance.serving.response_store import ACTIVE, ResponseStore, StoreWriter, now
from appliance.serving.streaming import Stream
from appliance.tenancy.caller import Caller, Inactive

log = logging.getLogger("appliance.responses")

TERMINAL_TEXT = tuple(prefix.decode() for prefix in TERMINAL)

HOUSEKEEPING_S = 2.0  # at most, between renewals and looks for orphaned jobs (a third of the stale time if less)
PURGE_S = 600.0  # between deletions of responses past their retention
MAX_ATTEMPTS = 3  # runs of one job (its gateway killed each time) before it fails
POLL_S = 0.1  # how often a reader on another gateway looks for new events
# A live request would be told to retry these; a background job waits and tries again, for up to RETRY_FOR_S.
RETRIED = frozenset({ErrorCode.MODEL_UNAVAILABLE, ErrorCode.BACKEND_RATE_LIMITED})
RETRY_FOR_S = 600.0
MAX_PAUSE_S = 10.0
# What a failed job's error says: OpenAI's codes for a Response's error.
ERROR_CODES = {ErrorCode.RATE_LIMITED: "rate_limit_exceeded", ErrorCode.BUDGET_EXCEEDED: "rate_limit_exceeded",
               ErrorCode.QUOTA_EXCEEDED: "rate_limit_exceeded", ErrorCode.BACKEND_RATE_LIMITED: "rate_limit_exceeded",
               ErrorCode.VALIDATION_ERROR: "invalid_prompt"}


class Feed:
    """The events of a job running here, kept in order from ``first`` on, for the readers following it."""

    def __init__(self, first: int) -> None:
        self.first = first
        self.frames: list[bytes] = []
        self.closed = False
        self._changed = asyncio.Event()

    def put(self, numbered: list[tuple[int, bytes]]) -> None:
        self.frames += [frame for _seq, frame in numbered]
        self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def after(self, seq: int) -> AsyncIterator[bytes]:
        index = max(0, seq + 1 - self.first)
        while True:
            while index < len(self.frames):
                yield self.frames[index]
                index += 1
            if self.closed:
                return
            await self._changed.wait()


@dataclass
class Job:
    response_id: str
    caller: Caller
    body: ResponseRequest
    base_url: str
    response: dict[str, Any]  # the stored Response object: its id, created_at and the request's echo
    next_seq: int  # the sequence number of its next event (a job taken over goes on from the kept ones)
    feed: Feed
    began: bool = False  # its response.in_progress went out already (a job taken over)
    task: asyncio.Task[None] | None = None


class ResponseJobs:
    """The Responses API's state in this gateway: the store, its writer, and the background jobs running here."""

    def __init__(self, runtime: Any, engine: Engine) -> None:
        self.runtime = runtime
        self.store = ResponseStore(engine)
        self.writer = StoreWriter(self.store)
        self.owner = "responses_" + secrets.token_hex(8)
        self.jobs: dict[str, Job] = {}
        self.stopping = False  # the gateway stops: its jobs are handed back, not ended

    @property
    def stale_s(self) -> float:
        return float(self.runtime.settings.responses_stale_s)

    # --- the runner: renew, take over, purge -------------------------------------------------------------------

    async def run(self) -> None:
        """Housekeeping until cancelled; then the jobs running here stop and are handed back at once."""
        self.writer.start()
        every = min(HOUSEKEEPING_S, self.stale_s / 3)
        purged = 0.0
        try:
            while True:
                try:
                    await self._housekeeping()
                    if time.monotonic() - purged > PURGE_S:
                        days = self.runtime.settings.responses_retention_days
                        gone = await asyncio.to_thread(self.store.purge, days)
                        if gone:
                            log.info("deleted %d stored responses older than %g days", gone, days)
                        purged = time.monotonic()
                except Exception:
                    log.exception("responses housekeeping failed; it is tried again shortly")
                await asyncio.sleep(every)
        finally:
            self.stopping = True
            tasks = [job.task for job in self.jobs.values() if job.task is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.store.release, self.owner)
            await asyncio.to_thread(self.writer.close)

    async def _housekeeping(self) -> None:
        owned = await asyncio.to_thread(self.store.renew, self.owner)
        for response_id in [rid for rid in self.jobs if rid not in owned]:
            self.stop(response_id)  # cancelled or deleted (on this gateway or another), or taken over
        for row in await asyncio.to_thread(self.store.claim_orphans, self.owner, self.stale_s):
            await self._take_over(row)

    async def _take_over(self, row: Any) -> None:
        kept = await asyncio.to_thread(self.store.events, row.id, -1) if row.stream else []
        next_seq = kept[-1][0] + 1 if kept else 0
        response = json.loads(row.body)
        if row.attempts > MAX_ATTEMPTS:
            reason = f"its gateway stopped {row.attempts - 1} times while running it"
        elif any(not frame.startswith(("event: response.created", "event: response.queued",
                                       "event: response.in_progress")) for _seq, frame in kept):
            reason = "its gateway stopped while streaming it, after part of the answer had been sent"
        else:
            reason = None
        key: ApiKey | None = await asyncio.to_thread(self.runtime.keys.get, row.key_id)
        caller: Caller | None = None
        if reason is None and (key is None or not key.active()):
            reason = "its API key was revoked or has expired"
        elif reason is None and key is not None:
            try:
                caller = await asyncio.to_thread(self.runtime.directory.caller_of, key)
            except Inactive as exc:
                reason = f"its API key may no longer be used ({exc})"
        body = None
        if reason is None:
            try:
                body = ResponseRequest.model_validate_json(row.request or "")
            except ValueError:
                reason = "its stored request could not be read again"
        if reason is not None:
            log.warning("background response %s failed: %s", row.id, reason)
            await self._fail_orphan(row.id, response, next_seq, row.stream, reason)
            return
        assert caller is not None and body is not None
        log.warning("background response %s taken over from a gateway that stopped (attempt %d)", row.id, row.attempts)
        settings = self.runtime.settings
        base = (settings.public_base_url or f"http://{settings.host}:{settings.port}").rstrip("/") + "/"
        began = any(frame.startswith("event: response.in_progress") for _seq, frame in kept)
        self._start(Job(row.id, caller, body, base, response, next_seq, Feed(next_seq), began=began))

    async def _fail_orphan(self, response_id: str, response: dict[str, Any], next_seq: int, stream: bool,
                           reason: str) -> None:
        message = f"The response could not be finished: {reason}. Create it again."
        events = EventStream(response, seq=next_seq)
        if stream:
            events.fail("server_error", message)
        response.update(status="failed", error={"code": "server_error", "message": message})
        frames = [(seq, frame.decode()) for seq, frame in events.take_numbered()]
        await asyncio.to_thread(self.store.finish, response_id, self.owner, "failed", dumps(response), frames)

    # --- jobs ----------------------------------------------------------------------------------------------------

    async def submit(self, call: Call, body: ResponseRequest, response_id: str, created_at: int) -> bytes | Stream:
        """Store a new background response, claimed by this runner, and start it; the queued Response (or the
        stream of its events) at once."""
        from appliance.serving.responses import prepare, stored_row  # the service and its jobs call each other

        prepared = await prepare(call, body, response_id, created_at, status="queued")
        call.fields["metered"] = False  # the job's call is the one metered and recorded, once it has run
        response = prepared.response
        request = body.model_dump_json(by_alias=True, exclude_none=True)
        await self.writer.submit(stored_row(call, prepared, response, request=request, owner=self.owner,
                                            claimed_at=now(), attempts=1))
        job = Job(response_id, call.caller, body, call.base_url, json.loads(dumps(response)), 0, Feed(0))
        self._start(job)
        if body.streamed:
            return Stream(job.feed.after(-1), "text/event-stream", {"cache-control": "no-cache",
                                                                    "x-accel-buffering": "no"})
        return dumps(response).encode()

    def _start(self, job: Job) -> None:
        self.jobs[job.response_id] = job
        job.task = asyncio.get_running_loop().create_task(self._run_job(job), name=f"response {job.response_id}")

    def stop(self, response_id: str) -> None:
        """The job, if it runs here, stops now (it was cancelled or deleted)."""
        job = self.jobs.get(response_id)
        if job is not None and job.task is not None:
            job.task.cancel()

    async def _run_job(self, job: Job) -> None:
        from appliance.serving.responses import ROUTE, finished, prepare

        call = Call.for_line(self.runtime, job.caller, Surface.OPENAI, job.base_url)  # background: below live traffic
        started, status_code = time.perf_counter(), 200
        events = EventStream(job.response, seq=job.next_seq,
                             parallel_tool_calls=job.response.get("parallel_tool_calls", True))
        stream = job.body.streamed
        try:
            if stream and job.next_seq == 0:
                events.lifecycle("response.created")
                events.lifecycle("response.queued")
            prepared = await prepare(call, job.body, job.response_id, job.response["created_at"])
            prepared.response = events.response = job.response
            job.response["status"] = "in_progress"
            if not await asyncio.to_thread(self.store.start, job.response_id, self.owner, dumps(job.response)):
                job.feed.close()  # cancelled or deleted before it began: nothing ran, nothing to record
                self.jobs.pop(job.response_id, None)
                return
            if stream and not job.began:
                events.lifecycle("response.in_progress")
            await self._emit(job, events)
            result = await self._chat(call, prepared, stream)
            if isinstance(result, Stream):
                failure = None
                async with contextlib.aclosing(result.chunks) as chunks:  # type: ignore[type-var]
                    async for data in chunks:
                        failure = events.feed_frames(data)
                        await self._emit(job, events)
                        if failure is not None:
                            break
                if failure is None:
                    events.complete(int(time.time()))
                else:
                    events.fail("server_error", failure)
            else:
                finished(job.response, result)
        except ApiError as exc:
            status_code = exc.status_code
            call.error_code = exc.code.value
            message = exc.message
            if stream:
                events.fail(ERROR_CODES.get(exc.code, "server_error"), message)
            job.response.update(status="failed", error={"code": ERROR_CODES.get(exc.code, "server_error"),
                                                        "message": message})
        except asyncio.CancelledError:
            status_code = 499  # cancelled, deleted, or this gateway stops: nothing charged
            call.error_code = "CANCELLED"
            with contextlib.suppress(Exception):  # handed back at a stop: its one usage row is the next run's
                ended = metering.settle if self.stopping else metering.finish
                args = (status_code,) if self.stopping else (ROUTE, status_code, started)
                await asyncio.shield(ended(self.runtime, call.fields, *args))  # type: ignore[operator]
            job.feed.close()
            self.jobs.pop(job.response_id, None)
            raise
        except Exception:
            log.exception("background response %s failed unexpectedly", job.response_id)
            status_code, call.error_code = 500, ErrorCode.INTERNAL_ERROR.value
            message = "The appliance failed to run this response; it is logged."
            if stream:
                events.fail("server_error", message)
            job.response.update(status="failed", error={"code": "server_error", "message": message})
        try:
            await self._finish(job, events)
        finally:
            await metering.finish(self.runtime, call.fields, ROUTE, status_code, started)
            job.feed.close()
            self.jobs.pop(job.response_id, None)

    async def _chat(self, call: Call, prepared: Any, stream: bool) -> Any:
        """The job's chat completion; a model still loading (a gateway just restarted) or at capacity is waited
        for, not a failure."""
        from appliance.serving.responses import release_reservation, run_chat

        deadline = time.monotonic() + RETRY_FOR_S
        while True:
            try:
                return await run_chat(call, prepared, stream)
            except ApiError as exc:
                if exc.code not in RETRIED or time.monotonic() > deadline:
                    raise
                await release_reservation(call)
                await asyncio.sleep(min(MAX_PAUSE_S, max(0.5, float(exc.retry_after or 1))))

    async def _emit(self, job: Job, events: EventStream) -> None:
        """The new events to the DB, then to this gateway's readers: no client sees an event the DB has not, so a
        job taken over never numbers an event a client already had."""
        numbered = events.take_numbered()
        if not numbered:
            return
        if job.body.streamed:
            await asyncio.to_thread(self.store.add_events, job.response_id,
                                    [(seq, frame.decode()) for seq, frame in numbered])
        job.feed.put(numbered)

    async def _finish(self, job: Job, events: EventStream) -> None:
        """The result, and the last events, in one write (if this runner still owns the job); then to the readers."""
        numbered = events.take_numbered()
        frames = [(seq, frame.decode()) for seq, frame in numbered] if job.body.streamed else []
        written = await asyncio.to_thread(self.store.finish, job.response_id, self.owner, job.response["status"],
                                          dumps(job.response), frames)
        if written:
            job.feed.put(numbered)
        else:
            log.info("background response %s ended after it was cancelled, deleted or taken over; its result is "
                     "dropped", job.response_id)

    # --- readers -------------------------------------------------------------------------------------------------

    async def follow(self, response_id: str, after: int) -> AsyncIterator[bytes]:
        """The events of a streamed background response after ``after``, until its last one: from the job if it
        runs here, else from the DB as they are written there."""
        last = after
        while True:
            job = self.jobs.get(response_id)
            if job is not None and job.feed.first <= last + 1:
                async for frame in job.feed.after(last):
                    yield frame
                return
            kept = await asyncio.to_thread(self.store.events, response_id, last)
            for seq, frame in kept:
                yield frame.encode()
                last = seq
                if frame.startswith(TERMINAL_TEXT):
                    return
            if kept:
                continue
            if job is None and await asyncio.to_thread(self.store.status, response_id) not in ACTIVE:
                if not await asyncio.to_thread(self.store.events, response_id, last):
                    return  # ended without a last event (cancelled), or deleted
                continue  # its last events were written as it ended
            await asyncio.sleep(POLL_S)
