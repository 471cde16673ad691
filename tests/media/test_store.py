"""The media store on a real SQLite state DB and a real directory, with a clock the tests move by hand."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from appliance.db.database import open_database
from appliance.db.media import MediaRow
from appliance.media import tokens
from appliance.media.files import handover_name, write_atomically
from appliance.media.store import ORPHAN_GRACE_S, MediaFull, MediaStore
from appliance.media.sweeper import sweep_interval

TTL = 3600.0
PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(2048)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'appliance.db'}"


@pytest.fixture
def store(tmp_path: Path, db_url: str, clock: Clock) -> MediaStore:
    return MediaStore(open_database(db_url), tmp_path / "media", TTL, clock=clock)


def test_a_stored_file_comes_back_through_its_token_until_it_expires(store: MediaStore, clock: Clock) -> None:
    stored = store.put(PNG, "image/png")
    assert stored.expires_at == clock.now + TTL
    found = store.open(stored.token)
    assert found is not None and found.path.read_bytes() == PNG
    assert found.content_type == "image/png" and found.size == len(PNG)
    assert found.path.parent == store.root
    clock.now += TTL - 1
    assert store.open(stored.token) is not None
    clock.now += 1
    assert store.open(stored.token) is None


def test_tokens_are_random_and_only_their_hash_is_kept(store: MediaStore) -> None:
    made = {store.put(PNG).token for _ in range(20)}
    assert len(made) == 20
    assert all(tokens.is_well_formed(token) and len(token) == 47 for token in made)
    with Session(store.engine) as session:
        dumped = " ".join(str(value) for row in session.execute(text("SELECT * FROM media")) for value in row)
    assert not any(token in dumped or token[4:] in dumped for token in made)
    assert not any(token[4:] in name for token in made for name in os.listdir(store.root))


@pytest.mark.parametrize("token", [
    "", "tok_", "tok_abc", "../appliance.db", "tok_../../appliance.db", "tok_" + "a" * 42 + "/",
    "tok_" + "a" * 43 + "\n", "tok_" + "a" * 44, "TOK_" + "a" * 43, "tok_" + "a" * 41 + "..",
    "/etc/passwd", "tok_%2e%2e%2fappliance.db", "tok_" + "a" * 43 + "\x00",
])
def test_malformed_tokens_find_nothing(store: MediaStore, token: str) -> None:
    store.put(PNG)
    assert store.open(token) is None


def test_an_unknown_well_formed_token_finds_nothing(store: MediaStore) -> None:
    store.put(PNG)
    assert store.open(tokens.new_token()) is None


def test_the_sweep_removes_expired_files_and_rows_and_keeps_the_rest(store: MediaStore, clock: Clock) -> None:
    old = store.put(PNG)
    clock.now += TTL / 2
    young = store.put(PNG)
    assert store.sweep() == 0
    clock.now += TTL / 2
    assert store.sweep() == 1
    assert store.open(old.token) is None and store.open(young.token) is not None
    with Session(store.engine) as session:
        assert len(list(session.scalars(select(MediaRow)))) == 1
    assert len(list(store.root.iterdir())) == 1
    clock.now += TTL
    assert store.sweep() == 1
    assert list(store.root.iterdir()) == []


def test_a_per_file_lifetime_overrides_the_default(store: MediaStore, clock: Clock) -> None:
    stored = store.put(b"{}\n", "application/jsonl", ttl_s=10)
    clock.now += 10
    assert store.open(stored.token) is None


def test_files_and_tokens_survive_a_restart(tmp_path: Path, db_url: str, clock: Clock) -> None:
    first = MediaStore(open_database(db_url), tmp_path / "media", TTL, clock=clock)
    stored = first.put(PNG)
    first.engine.dispose()
    again = MediaStore(open_database(db_url), tmp_path / "media", TTL, clock=clock)
    found = again.open(stored.token)
    assert found is not None and found.path.read_bytes() == PNG


def test_orphan_files_go_only_after_a_grace_period(store: MediaStore, clock: Clock) -> None:
    clock.now -= TTL / 2
    store.put(PNG)
    clock.now += TTL / 2
    orphan = store.root / ("0" * 64 + ".png")  # a file whose row never got written (a crash in between)
    orphan.write_bytes(PNG)
    half_written = store.root / ".tmp-0123456789abcdef"
    half_written.write_bytes(PNG[:10])
    for path in (orphan, half_written):
        os.utime(path, (clock.now, clock.now))
    assert store.sweep() == 0 and orphan.exists() and half_written.exists()
    clock.now += TTL / 2 + 1  # the first file has expired
    kept = store.put(PNG)  # a fresh file with its row stays, whatever its age on disk
    for path in store.root.iterdir():
        os.utime(path, (clock.now - ORPHAN_GRACE_S - 1,) * 2)
    assert store.sweep() == 3  # the orphan, the half-written file, and the first file, now expired
    assert not orphan.exists() and not half_written.exists()
    assert store.open(kept.token) is not None


def test_a_missing_file_is_not_found_rather_than_an_error(store: MediaStore) -> None:
    stored = store.put(PNG)
    found = store.open(stored.token)
    assert found is not None
    found.path.unlink()
    assert store.open(stored.token) is None


def test_the_sweep_interval_follows_the_lifetime() -> None:
    assert sweep_interval(3600) == 60
    assert sweep_interval(8) == 2
    assert sweep_interval(0.5) == 1


def test_the_real_clock_is_the_default(tmp_path: Path, db_url: str) -> None:
    store = MediaStore(open_database(db_url), tmp_path / "media", TTL)
    assert abs(store.put(PNG).expires_at - (time.time() + TTL)) < 60


# --- the cap on stored bytes -----------------------------------------------------------------


def capped(tmp_path: Path, db_url: str, clock: Clock, max_bytes: int, **options: int) -> MediaStore:
    return MediaStore(open_database(db_url), tmp_path / "media", TTL, clock=clock, max_bytes=max_bytes, **options)


def test_past_the_cap_expired_files_make_room_first(tmp_path: Path, db_url: str, clock: Clock) -> None:
    store = capped(tmp_path, db_url, clock, max_bytes=3 * len(PNG))
    old = [store.put(PNG, ttl_s=10) for _ in range(2)]
    kept = store.put(PNG)
    clock.now += 11  # the two old ones expired; the sweeper has not run
    fresh = store.put_all([PNG, PNG])
    assert [store.open(s.token) for s in old] == [None, None]
    assert store.open(kept.token) is not None and all(store.open(s.token) for s in fresh)
    assert store.used_bytes() == 3 * len(PNG) and len(list(store.root.iterdir())) == 3


def test_a_full_store_refuses_new_media_whole_with_when_to_retry(tmp_path: Path, db_url: str, clock: Clock) -> None:
    store = capped(tmp_path, db_url, clock, max_bytes=3 * len(PNG))
    store.put(PNG, ttl_s=100)
    store.put(PNG, ttl_s=40)
    clock.now += 10
    with pytest.raises(MediaFull) as full:
        store.put_all([PNG, PNG])  # one would fit, both do not: neither is stored
    assert full.value.retry_after == 30 and "full" in str(full.value)
    assert store.used_bytes() == 2 * len(PNG) and len(list(store.root.iterdir())) == 2
    assert store.put(PNG)  # one still fits


def test_media_never_take_the_free_space_the_database_needs(tmp_path: Path, db_url: str, clock: Clock) -> None:
    whole_disk = shutil.disk_usage(tmp_path).total  # more than can ever be free, whatever else writes meanwhile
    store = capped(tmp_path, db_url, clock, max_bytes=10 * len(PNG), min_free_bytes=whole_disk + 1)
    with pytest.raises(MediaFull):
        store.put(PNG)
    assert list(store.root.iterdir()) == [] and store.used_bytes() == 0


def test_without_a_setting_the_cap_is_a_share_of_the_disk(tmp_path: Path, db_url: str, clock: Clock) -> None:
    store = MediaStore(open_database(db_url), tmp_path / "media", TTL, clock=clock)
    total = shutil.disk_usage(tmp_path).total
    assert store.max_bytes == total // 10 and 0 < store.min_free_bytes <= 1 << 30


def test_stored_files_are_private(store: MediaStore) -> None:
    found = store.open(store.put(PNG).token)
    assert found is not None and found.path.stat().st_mode & 0o777 == 0o600


def handed_over(store: MediaStore, data: bytes = PNG) -> str:
    """A file as a local image worker leaves it: written whole under a hand-over name in the media directory."""
    name = handover_name()
    write_atomically(store.root / name, lambda fh: fh.write(data))
    return name


def test_an_adopted_file_is_renamed_to_its_hash_and_served_as_written(store: MediaStore, clock: Clock) -> None:
    first, second = handed_over(store), handed_over(store, PNG[::-1])
    stored = store.adopt([first, second], "image/png")
    assert [stored_one.expires_at for stored_one in stored] == [clock.now + TTL] * 2
    found = [store.open(one.token) for one in stored]
    assert [(item.path.read_bytes(), item.size) for item in found if item] == [(PNG, len(PNG)), (PNG[::-1], len(PNG))]
    assert sorted(os.listdir(store.root)) == sorted(tokens.digest(one.token) + ".png" for one in stored)


@pytest.mark.parametrize("name", [".tmp-0123456789abcdef", "new-" + "0" * 32 + ".png.tmp", "../appliance.db",
                                  "new-" + "0" * 31 + ".png"])
def test_only_finished_hand_over_files_are_adopted(store: MediaStore, name: str) -> None:
    (store.root / name.removeprefix("../")).write_bytes(PNG)  # a half-written or foreign file in the directory
    with pytest.raises(ValueError, match="not the name of a finished image"):
        store.adopt([name])
    assert store.used_bytes() == 0


def test_a_name_the_worker_never_finished_is_refused_and_its_batch_removed(store: MediaStore) -> None:
    written = handed_over(store)
    with pytest.raises(FileNotFoundError):
        store.adopt([written, handover_name()])
    assert os.listdir(store.root) == [] and store.used_bytes() == 0  # all or none, nothing left unregistered


def test_a_full_store_refuses_adopted_files_and_removes_them(tmp_path: Path, db_url: str, clock: Clock) -> None:
    store = MediaStore(open_database(db_url), tmp_path / "media", TTL, clock=clock, max_bytes=len(PNG) * 3 // 2)
    store.adopt([handed_over(store)])
    with pytest.raises(MediaFull):
        store.adopt([handed_over(store)])
    assert len(os.listdir(store.root)) == 1 and store.used_bytes() == len(PNG)


def test_adopted_files_expire_like_stored_ones(store: MediaStore, clock: Clock) -> None:
    stored = store.adopt([handed_over(store)])[0]
    clock.now += TTL
    assert store.sweep() == 1 and store.open(stored.token) is None and os.listdir(store.root) == []
