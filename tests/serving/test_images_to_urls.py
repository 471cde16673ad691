"""The gateway's step from a backend's images (base64, or a local worker's files) to media URLs, on a real store."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest

from appliance.db.database import open_database
from appliance.serving.errors import ApiError, ErrorCode
from appliance.serving.images import decode_base64, to_urls
from appliance.media.files import handover_name, write_atomically
from appliance.media.store import MediaStore

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4000  # over a megabyte: several base64 slices


def worker_answer(*images: bytes) -> bytes:
    data = [{"url": None, "b64_json": base64.b64encode(image).decode(), "revised_prompt": "a cat"}
            for image in images]
    return json.dumps({"created": 1, "data": data}).encode()


@pytest.fixture
def store(tmp_path: Path) -> MediaStore:
    return MediaStore(open_database(f"sqlite:///{tmp_path / 'state.db'}"), tmp_path / "media", 3600)


def test_images_become_urls_to_the_same_bytes(store: MediaStore) -> None:
    answer = json.loads(to_urls(worker_answer(PNG, PNG[::-1]), store, "http://box/v1/media/", "m"))
    assert answer["created"] == 1 and [item["revised_prompt"] for item in answer["data"]] == ["a cat", "a cat"]
    assert all("b64_json" not in item for item in answer["data"])  # OpenAI omits it, never null
    scaigrid = json.loads(to_urls(worker_answer(PNG), store, "http://box/v1/media/", "m", with_nulls=True))
    assert scaigrid["data"][0]["b64_json"] is None  # as ScaiGrid's answers show it
    tokens = [item["url"].removeprefix("http://box/v1/media/") for item in answer["data"]]
    stored = [store.open(token) for token in tokens]
    assert [found.path.read_bytes() for found in stored if found] == [PNG, PNG[::-1]]


def test_slices_decode_like_one_call() -> None:
    text = base64.b64encode(PNG + b"x").decode()  # padded
    assert decode_base64(text) == PNG + b"x"


@pytest.mark.parametrize("answer", [b"not json", b'{"created": 1, "data": []}',
                                    b'{"created": 1, "data": [{"b64_json": "%%%"}]}',
                                    b'{"created": 1, "data": [{"b64_json": null}]}'])
def test_an_answer_without_images_is_a_backend_error(store: MediaStore, answer: bytes) -> None:
    with pytest.raises(ApiError) as caught:
        to_urls(answer, store, "http://box/v1/media/", "m")
    assert caught.value.code == ErrorCode.BACKEND_ERROR


def test_a_store_that_cannot_write_is_a_backend_error_that_says_why(store: MediaStore) -> None:
    shutil.rmtree(store.root)
    store.root.write_bytes(b"")  # the media directory is now a file: writing into it fails for real
    with pytest.raises(ApiError) as caught:
        to_urls(worker_answer(PNG), store, "http://box/v1/media/", "m")
    assert caught.value.code == ErrorCode.BACKEND_ERROR
    assert "could not store" in caught.value.message and "b64_json" in caught.value.message


def test_a_full_media_store_is_a_retryable_backend_rate_limited(tmp_path: Path) -> None:
    store = MediaStore(open_database(f"sqlite:///{tmp_path / 'state.db'}"), tmp_path / "media", 3600,
                       max_bytes=len(PNG) * 3 // 2)
    to_urls(worker_answer(PNG), store, "http://box/v1/media/", "m")
    with pytest.raises(ApiError) as caught:
        to_urls(worker_answer(PNG), store, "http://box/v1/media/", "m")
    assert caught.value.code == ErrorCode.BACKEND_RATE_LIMITED and caught.value.status_code == 429
    assert 3590 <= (caught.value.retry_after or 0) <= 3600 and "b64_json" in caught.value.message
    assert len(list(store.root.iterdir())) == 1  # nothing half-written


def files_answer(store: MediaStore, *names: str) -> bytes:
    data = [{"file": name, "size": (store.root / name).stat().st_size if (store.root / name).exists() else 0,
             "revised_prompt": "a cat"} for name in names]
    return json.dumps({"created": 1, "files": data}).encode()


def test_files_of_a_local_worker_become_urls_without_a_copy(store: MediaStore) -> None:
    name = handover_name()
    write_atomically(store.root / name, lambda fh: fh.write(PNG))
    inode = (store.root / name).stat().st_ino
    answer = json.loads(to_urls(files_answer(store, name), store, "http://box/v1/media/", "m"))
    [item] = answer["data"]
    found = store.open(item["url"].removeprefix("http://box/v1/media/"))
    assert found is not None and found.path.read_bytes() == PNG and item["revised_prompt"] == "a cat"
    assert found.path.stat().st_ino == inode  # the worker's file itself, renamed


def test_a_file_answer_naming_a_temporary_or_missing_file_is_a_backend_error(store: MediaStore) -> None:
    (store.root / ".tmp-0123456789abcdef").write_bytes(PNG)  # what a worker killed mid-write leaves
    for name in (".tmp-0123456789abcdef", handover_name()):
        with pytest.raises(ApiError) as caught:
            to_urls(files_answer(store, name), store, "http://box/v1/media/", "m")
        assert caught.value.code == ErrorCode.BACKEND_ERROR
    assert store.used_bytes() == 0


def test_a_full_store_refuses_worker_files_as_retryable_and_removes_them(tmp_path: Path) -> None:
    store = MediaStore(open_database(f"sqlite:///{tmp_path / 'state.db'}"), tmp_path / "media", 3600, max_bytes=10)
    name = handover_name()
    write_atomically(store.root / name, lambda fh: fh.write(PNG))
    with pytest.raises(ApiError) as caught:
        to_urls(files_answer(store, name), store, "http://box/v1/media/", "m")
    assert caught.value.code == ErrorCode.BACKEND_RATE_LIMITED and "b64_json" in caught.value.message
    assert list(store.root.iterdir()) == []
