"""The batch store on a real SQLite state DB: each line claimed once, results committed only by their owner,
stale claims re-queued, windows and retention enforced, and result files that a rebuild writes the same."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from appliance.batch.files import FileStore
from appliance.batch.intake import create_batch
from appliance.batch.results import finalize
from appliance.batch.store import BatchStore, LineResult, now
from appliance.db.batches import BatchLineRow, BatchRow
from appliance.db.database import open_database
from appliance.media.store import MediaStore
from tests.batch.helpers import embed_line, jsonl


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return open_database(f"sqlite:///{tmp_path / 'state.db'}")


@pytest.fixture
def files(engine: Engine, tmp_path: Path) -> FileStore:
    return FileStore(engine, tmp_path / "files")


@pytest.fixture
def media(engine: Engine, tmp_path: Path) -> MediaStore:
    return MediaStore(engine, tmp_path / "media", 3600)


def new_batch(engine: Engine, files: FileStore, count: int) -> BatchRow:
    content = jsonl([embed_line(f"c{n}") for n in range(count)])
    stored = files.save("key_a", "batch", "in.jsonl", io.BytesIO(content), 10**6)
    assert stored is not None
    return create_batch(engine, key_id="key_a", surface="scaigrid", endpoint=None, input_file_id=stored.id,
                        input_path=files.path(stored.id), window="24h", metadata=None)


def test_a_line_is_claimed_by_one_runner_only(engine: Engine, files: FileStore) -> None:
    store = BatchStore(engine)
    new_batch(engine, files, 3)
    refs = store.candidates(10)
    assert [ref.line_no for ref in refs] == [1, 2, 3]
    first = store.claim("runner_a", refs)
    second = store.claim("runner_b", refs)
    assert first == refs and second == []
    assert store.candidates(10) == []


def test_only_the_owner_commits_and_a_stale_claim_goes_back_to_the_queue(engine: Engine, files: FileStore) -> None:
    store = BatchStore(engine)
    new_batch(engine, files, 1)
    [ref] = store.claim("runner_a", store.candidates(10))
    with Session(engine) as session, session.begin():  # runner_a went silent a minute ago
        session.execute(update(BatchLineRow).values(claimed_at=now() - timedelta(seconds=60)))
    assert store.requeue_stale(stale_s=30) == 1
    [again] = store.claim("runner_b", store.candidates(10))
    assert not store.commit_result("runner_a", ref, True, 200, "req_a", "{}")  # too late: it is runner_b's now
    assert store.commit_result("runner_b", again, True, 200, "req_b", "{}")
    assert store.counts(ref.batch_id) == {"done": 1}


def test_a_group_is_claimed_in_one_go_skipping_lines_another_runner_took(engine: Engine, files: FileStore) -> None:
    store = BatchStore(engine)
    first, second = new_batch(engine, files, 4), new_batch(engine, files, 2)
    refs = store.candidates(10)
    assert [(ref.batch_id, ref.line_no) for ref in refs] == [(first.id, n) for n in (1, 2, 3, 4)] + [
        (second.id, 1), (second.id, 2)]
    assert all(ref.url == "/v1/inference/embed" and ref.length > 0 for ref in refs)  # what a run needs, no re-read
    taken_by_b = store.claim("runner_b", [refs[1], refs[4]])
    assert store.claim("runner_a", refs) == [refs[0], refs[2], refs[3], refs[5]]
    assert taken_by_b == [refs[1], refs[4]]


def test_a_group_of_results_is_stored_at_once_only_for_the_lines_still_owned(engine: Engine,
                                                                             files: FileStore) -> None:
    store = BatchStore(engine)
    batch = new_batch(engine, files, 3)
    refs = store.claim("runner_a", store.candidates(10))
    with Session(engine) as session, session.begin():  # line 3 went stale and runner_b has it now
        session.execute(update(BatchLineRow).where(BatchLineRow.line_no == 3).values(owner="runner_b"))
    results = [LineResult(refs[0], True, 200, "req_1", "{}"),
               LineResult(refs[1], False, 404, "req_2", '{"code":"MODEL_NOT_FOUND","message":"no"}'),
               LineResult(refs[2], True, 200, "req_3", "{}")]
    assert store.commit_results("runner_a", results) == (1, 1)
    assert store.counts(batch.id) == {"done": 1, "failed": 1, "running": 1}
    assert [line.request_id for line in store.finished_lines(batch.id)][:2] == ["req_1", "req_2"]


def test_a_renewed_claim_is_not_stale(engine: Engine, files: FileStore) -> None:
    store = BatchStore(engine)
    new_batch(engine, files, 1)
    store.claim("runner_a", store.candidates(10))
    store.renew("runner_a")
    assert store.requeue_stale(stale_s=30) == 0


def test_past_its_window_a_batch_expires_keeping_what_completed(engine: Engine, files: FileStore,
                                                                media: MediaStore) -> None:
    store = BatchStore(engine)
    batch = new_batch(engine, files, 3)
    [ref] = store.claim("runner_a", store.candidates(1))
    store.commit_result("runner_a", ref, True, 200, "req_1", '{"object":"list"}')
    with Session(engine) as session, session.begin():
        session.execute(update(BatchRow).values(expires_at=now() - timedelta(seconds=1)))
    assert store.expire_overdue() == [batch.id]
    [ready] = store.ready_to_finalize(stale_s=30)
    assert store.claim_finalize("runner_a", ready, stale_s=30)
    assert not store.claim_finalize("runner_b", ready, stale_s=30)  # one finalizer at a time
    assert finalize(store, files, media, store.get(batch.id, None), "runner_a", retention_s=3600)
    done = store.get(batch.id, None)
    assert done is not None and done.status == "expired" and done.expired_at is not None
    output = files.path(done.output_file_id).read_text().splitlines()
    errors = [json.loads(line) for line in files.path(done.error_file_id).read_text().splitlines()]
    assert [json.loads(line)["custom_id"] for line in output] == ["c0"]
    assert [(e["custom_id"], e["error"]["code"]) for e in errors] == [("c1", "batch_expired"),
                                                                      ("c2", "batch_expired")]


def test_a_finalization_taken_over_by_another_runner_writes_nothing(engine: Engine, files: FileStore,
                                                                    media: MediaStore) -> None:
    store = BatchStore(engine)
    batch = new_batch(engine, files, 1)
    [ref] = store.claim("runner_a", store.candidates(1))
    store.commit_result("runner_a", ref, False, 404, "req_1", '{"code":"MODEL_NOT_FOUND","message":"no"}')
    [ready] = store.ready_to_finalize(stale_s=30)
    assert store.claim_finalize("runner_a", ready, stale_s=30)
    with Session(engine) as session, session.begin():  # runner_a stalled; runner_b took over
        session.execute(update(BatchRow).values(finalizer="runner_b"))
    assert not finalize(store, files, media, store.get(batch.id, None), "runner_a", retention_s=3600)
    assert store.get(batch.id, None).status == "finalizing"
    assert sorted(p.name for p in files.root.iterdir()) == [f"{batch.input_file_id}.jsonl"]


def test_retention_finds_batches_ended_long_ago(engine: Engine, files: FileStore) -> None:
    store = BatchStore(engine)
    batch = new_batch(engine, files, 1)
    with Session(engine) as session, session.begin():
        session.execute(update(BatchRow).values(status="completed", completed_at=now() - timedelta(days=31)))
    assert [b.id for b in store.expired_for_retention(days=30)] == [batch.id]
    assert store.expired_for_retention(days=40) == []
    store.delete(batch.id)
    assert store.get(batch.id, None) is None and store.counts(batch.id) == {}


def test_a_line_requeued_after_its_batch_was_cancelled_is_closed_not_left_queued(engine: Engine,
                                                                                files: FileStore) -> None:
    store = BatchStore(engine)
    batch = new_batch(engine, files, 2)
    store.claim("runner_a", store.candidates(1))
    assert store.cancel(batch.id)
    with Session(engine) as session, session.begin():  # runner_a died holding its line
        session.execute(update(BatchLineRow).where(BatchLineRow.state == "running")
                        .values(claimed_at=now() - timedelta(seconds=60)))
    assert store.requeue_stale(stale_s=30) == 1
    store.close_cancelled()
    assert store.counts(batch.id) == {"cancelled": 2}
    assert [b.id for b in store.ready_to_finalize(stale_s=30)] == [batch.id]
