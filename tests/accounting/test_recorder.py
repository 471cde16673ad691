"""The usage writer: rows queued on the hot path reach the DB in batches, and none is lost on close."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from appliance.accounting.recorder import UsageRecorder
from appliance.accounting.store import UsageFilter, UsageStore
from appliance.db.database import open_database


def row(index: int, key_id: str = "key_a", model: str = "m1", tokens: int = 3) -> dict[str, object]:
    return {"id": f"usage_{index}", "created_at": datetime.now(UTC), "request_id": f"req_{index}", "key_id": key_id,
            "model": model, "backend_id": "b", "route": "/v1/inference/chat", "status_code": 200,
            "error_code": None, "latency_ms": 1.0, "tokens_in": tokens, "tokens_out": 1, "images": 0,
            "image_size": None, "audio_seconds_in": 0.0, "audio_seconds_out": 0.0, "characters": 0}


def test_rows_queued_before_close_are_all_written(tmp_path: Path) -> None:
    store = UsageStore(open_database(f"sqlite:///{tmp_path / 'state.db'}"))
    recorder = UsageRecorder(store, interval_s=60, batch_size=7)  # a long interval: only batches and close write
    recorder.start()
    for index in range(100):
        recorder.record(row(index))
    recorder.close()
    rows, cursor = store.page(UsageFilter(), limit=1000)
    assert len(rows) == 100 and cursor is None


def test_flush_waits_for_the_writer(tmp_path: Path) -> None:
    store = UsageStore(open_database(f"sqlite:///{tmp_path / 'state.db'}"))
    recorder = UsageRecorder(store)
    recorder.start()
    recorder.record(row(1))
    assert recorder.flush()
    assert len(store.page(UsageFilter(), limit=10)[0]) == 1
    recorder.close()


def test_summaries_are_the_sums_of_the_rows_and_pages_follow_the_cursor(tmp_path: Path) -> None:
    store = UsageStore(open_database(f"sqlite:///{tmp_path / 'state.db'}"))
    store.add_many([row(1, "key_a", "m1", 5), row(2, "key_a", "m2", 7), row(3, "key_b", "m1", 11)])
    by_model = {r["group_key"]: r for r in store.summary(UsageFilter(), "model")}
    assert (by_model["m1"]["request_count"], by_model["m1"]["input_tokens"], by_model["m1"]["total_tokens"]) == (
        2, 16, 18)
    assert [r["group_key"] for r in store.summary(UsageFilter(key_id="key_a"), "model")] == ["m1", "m2"]
    first, cursor = store.page(UsageFilter(), limit=2)
    rest, end = store.page(UsageFilter(), limit=2, cursor=cursor)
    assert [r.id for r in first + rest] == ["usage_3", "usage_2", "usage_1"] and end is None
