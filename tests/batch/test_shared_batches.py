"""Two gateways on one PostgreSQL run one batch together: every line runs once, the batch is finalized once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.batch.helpers import EMBED, b64, embed_line, wait_batch
from tests.conftest import catalogue_subset
from tests.support.appliance import start_appliance
from tests.support.postgres import postgres_server, why_unavailable

pytestmark = [pytest.mark.slow, pytest.mark.skipif(why_unavailable() is not None, reason=str(why_unavailable()))]


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


def test_two_gateways_share_one_batch_and_run_each_line_once(tiny_catalogue: Path, tmp_path: Path,
                                                             database_url: str) -> None:
    shared_files = tmp_path / "shared-files"  # what an NFS mount would be between two boxes
    env = {"APPLIANCE_DATABASE_URL": database_url, "APPLIANCE_BATCH_FILES_DIR": str(shared_files)}
    states = [tmp_path / f"gateway-{name}" for name in "ab"]
    states[0].mkdir()
    states[1].mkdir()
    catalogues = [catalogue_subset(tiny_catalogue, [EMBED], state / "models.toml", load="startup")
                  for state in states]
    # Enough lines that the first gateway cannot finish them all before the second one's runner looks (each second).
    lines = [embed_line(f"line-{n}", f"text {n}") for n in range(3000)]
    with start_appliance(catalogues[0], states[0], env=env) as a, start_appliance(catalogues[1], states[1],
                                                                                    env=env) as b:
        created = subprocess.run([sys.executable, "-m", "appliance.cli", "keys", "create", "shared"],
                                 capture_output=True, text=True, timeout=60,
                                 env={**os.environ, "APPLIANCE_DATABASE_URL": database_url,
                                      "APPLIANCE_STATE_DIR": str(states[0])})
        assert created.returncode == 0, created.stderr
        key = created.stdout.strip().splitlines()[-1]
        with a.client(key) as http_a, b.client(key) as http_b:
            batch_id = http_a.post("/v1/inference/batch", json={"input_file_base64": b64(lines)}).json()["data"]["id"]
            done = wait_batch(http_b, batch_id)
            output = http_b.get(f"/oai/v1/files/{done['output_file_id']}/content").text
    assert done["status"] == "completed" and done["request_counts"]["completed"] == len(lines)
    ids = [json.loads(line)["custom_id"] for line in output.splitlines()]
    assert ids == [line["custom_id"] for line in lines]  # each once, in input order
    engine = create_engine(database_url)
    with engine.connect() as connection:
        owners = connection.execute(text("SELECT owner, count(*) FROM batch_lines WHERE batch_id = :b GROUP BY owner"),
                                    {"b": batch_id}).all()
        usage = connection.execute(text("SELECT count(*) FROM usage WHERE key_id IN "
                                        "(SELECT key_id FROM batches WHERE id = :b)"), {"b": batch_id}).scalar()
    engine.dispose()
    assert len(owners) == 2, f"one gateway ran every line: {owners}"
    assert usage == len(lines)  # one usage row per line, whichever gateway ran it
