"""A full disk is refused at the door and repaired through the API (issue 21, item 3; each failed before its fix).

The state directory lives on a real tmpfs of its own, mounted for the test (root only, as in CI): uploads stop
at a key's quota and short of the space the state DB needs, and when something else fills the disk anyway, a
file delete and a key revocation still commit (the DB's reserve gives its room back) and every other write is
a clear QUOTA_EXCEEDED, never a 500.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import catalogue_subset
from tests.support.appliance import RunningAppliance, start_appliance

EMBED = "openai/text-embedding-3-small"
DISK_MB = 160
FILE_MB = 24
MANAGER = ("-p", "models:list", "-p", "models:use", "-p", "api_keys:manage")


@pytest.fixture(scope="module")
def small_disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    mount = tmp_path_factory.mktemp("small-disk")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m,mode=0700", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({made.stderr.strip()}); CI runs as root and can")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture(scope="module")
def appliance(tiny_catalogue: Path, small_disk: Path) -> Iterator[RunningAppliance]:
    state = small_disk / "state"
    state.mkdir()
    partial = state / "files" / ".tmp-file-leftover"  # an upload that was interrupted by a crash
    partial.parent.mkdir(mode=0o700)
    partial.write_bytes(b"x" * 1024)
    os.utime(partial, (time.time() - 3600, time.time() - 3600))
    catalogue = catalogue_subset(tiny_catalogue, [EMBED], small_disk / "models.toml")
    env = {"APPLIANCE_FILES_QUOTA_BYTES_PER_KEY": str(60 * 1024 * 1024), "APPLIANCE_MAX_BODY_BYTES": str(32 << 20)}
    with start_appliance(catalogue, state, env=env) as running:
        yield running


def upload(http: httpx.Client, megabytes: int = FILE_MB) -> httpx.Response:
    return http.post("/oai/v1/files", data={"purpose": "batch"},
                     files={"file": ("in.jsonl", b'{"a": 1}\n' * (megabytes * 1024 * 1024 // 9), "application/jsonl")})


def test_a_partial_file_left_by_a_crash_is_swept_at_start(appliance: RunningAppliance) -> None:
    deadline = time.monotonic() + 30
    while (appliance.state_dir / "files" / ".tmp-file-leftover").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not (appliance.state_dir / "files" / ".tmp-file-leftover").exists()


def test_a_key_stops_at_its_quota_of_stored_files(appliance: RunningAppliance) -> None:
    with appliance.client(appliance.create_key(), timeout=120) as http:
        assert [upload(http).status_code for _ in range(2)] == [200, 200]
        refused = upload(http)
        # QUOTA_EXCEEDED in OpenAI's words: uploads are /oai/v1/files
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "insufficient_quota"
        assert "quota" in refused.json()["error"]["message"]
        for item in http.get("/oai/v1/files").json()["data"]:
            assert http.delete(f"/oai/v1/files/{item['id']}").status_code == 200


def test_uploads_stop_short_of_the_space_the_database_needs(appliance: RunningAppliance) -> None:
    statuses = []
    for _ in range(8):  # each key a fresh quota: only the disk can stop them
        with appliance.client(appliance.create_key(), timeout=120) as http:
            answer = upload(http)
            statuses.append(answer.status_code)
            if answer.status_code != 200:
                assert answer.json()["error"]["code"] == "insufficient_quota"
                assert "disk is nearly full" in answer.json()["error"]["message"]
                break
    assert statuses[-1] == 429 and 500 not in statuses
    assert not list((appliance.state_dir / "files").glob(".tmp-*"))  # the refused upload left nothing behind
    with appliance.client(appliance.create_key(*MANAGER), timeout=120) as admin:
        assert admin.post("/v1/api-keys", json={"name": "still works"}).status_code == 201


def test_a_disk_filled_by_something_else_can_still_be_repaired_through_the_api(appliance: RunningAppliance) -> None:
    key = appliance.create_key(*MANAGER)
    with appliance.client(key, timeout=120) as http:
        made = http.post("/oai/v1/files", data={"purpose": "batch"}, files={"file": ("in.jsonl", b"{}\n" * 1000)})
        assert made.status_code == 200, made.text
        child = http.post("/v1/api-keys", json={"name": "child"}).json()["data"]
        filler = appliance.state_dir.parent / "filler"
        with filler.open("wb") as fh:  # another program fills the disk to the last byte
            try:
                while True:
                    fh.write(b"\0" * (1 << 20))
                    fh.flush()
            except OSError:
                pass
        try:
            full = http.post("/v1/api-keys", json={"name": "no room"})
            assert full.status_code == 429 and "disk is full" in full.json()["error"]["message"], full.text
            assert http.delete(f"/oai/v1/files/{made.json()['id']}").status_code == 200
            revoked = http.delete(f"/v1/api-keys/{child['id']}")
            assert revoked.status_code == 200 and revoked.json()["data"]["status"] == "revoked"
        finally:
            filler.unlink()
        assert http.post("/v1/api-keys", json={"name": "room again"}).status_code == 201
