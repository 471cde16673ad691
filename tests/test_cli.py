"""The `appliance` command line: keys, models, tiny models and the demo a new user runs first."""

from __future__ import annotations

import json
import os
import re
import shlex
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.support.appliance import cli, free_port


def test_keys_create_prints_the_key_alone_on_the_last_line(tmp_path: Path) -> None:
    result = cli("keys", "create", "ci-bot", "--model", "openai/tts-1", "--rate-limit", "5", state_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    secret = result.stdout.splitlines()[-1]
    assert re.fullmatch(r"sgk_[A-Za-z0-9_\-]{32,}", secret)
    assert "models:list, models:use" in result.stdout  # the default permissions
    listing = cli("keys", "list", state_dir=tmp_path).stdout
    assert "ci-bot" in listing and "models=openai/tts-1" in listing and "rate_limit=5" in listing
    assert secret not in listing and secret[:8] in listing


def test_keys_create_refuses_an_unknown_permission(tmp_path: Path) -> None:
    result = cli("keys", "create", "x", "--permission", "models:fly", state_dir=tmp_path)
    assert result.returncode == 1
    assert "unknown permission 'models:fly'" in result.stderr


def test_keys_revoke_of_an_unknown_id_fails(tmp_path: Path) -> None:
    result = cli("keys", "revoke", "key_nope", state_dir=tmp_path)
    assert result.returncode == 1 and "no active key with id key_nope" in result.stderr


def test_a_tenants_share_is_set_from_the_cli_and_a_weight_of_0_is_refused(tmp_path: Path) -> None:
    made = cli("tenants", "create", "ingest", "--share-weight", "0.5", "--min-concurrency", "2", state_dir=tmp_path)
    assert made.returncode == 0, made.stderr
    assert "share=0.5 min_concurrency=2" in made.stdout
    tenant_id = made.stdout.splitlines()[-1]
    changed = cli("tenants", "set", tenant_id, "--share-weight", "3", state_dir=tmp_path)
    assert changed.returncode == 0 and "share=3 min_concurrency=2" in changed.stdout, changed.stderr
    for option, value in (("--share-weight", "0"), ("--share-weight", "-1"), ("--min-concurrency", "-1")):
        refused = cli("tenants", "set", tenant_id, option, value, state_dir=tmp_path)
        assert refused.returncode == 1 and option in refused.stderr, refused.stderr
    assert "share=3 min_concurrency=2" in cli("tenants", "list", state_dir=tmp_path).stdout


def test_tenants_set_and_users_set_change_only_what_is_given(tmp_path: Path) -> None:
    tenant_id = cli("tenants", "create", "ops", "--rate-limit", "60", state_dir=tmp_path).stdout.splitlines()[-1]
    changed = cli("tenants", "set", tenant_id, "--budget-tokens", "500", "--budget-period", "day",
                  "--status", "suspended", state_dir=tmp_path)
    assert changed.returncode == 0, changed.stderr
    assert "suspended" in changed.stdout and "rate_limit=60" in changed.stdout  # kept: not given
    assert "budget=500 tokens per day" in changed.stdout
    lifted = cli("tenants", "set", tenant_id, "--no-rate-limit", "--no-budget", state_dir=tmp_path).stdout
    assert "rate_limit=-" in lifted and "budget=none" in lifted
    user_id = cli("users", "create", "bo@example.com", "--tenant", tenant_id, state_dir=tmp_path).stdout.split()[-1]
    renamed = cli("users", "set", user_id, "--name", "Bo", "--rate-limit", "5", state_dir=tmp_path)
    assert renamed.returncode == 0 and "rate_limit=5" in renamed.stdout, renamed.stderr
    for command in (("tenants", "set", tenant_id), ("users", "set", user_id)):
        assert "nothing to change" in cli(*command, state_dir=tmp_path).stderr
        assert "--status must be one of" in cli(*command, "--status", "gone", state_dir=tmp_path).stderr
        assert "--rate-limit must be a positive" in cli(*command, "--rate-limit", "0", state_dir=tmp_path).stderr
    events = [line.split()[3] for line in cli("audit", "list", state_dir=tmp_path).stdout.splitlines()]
    assert events.count("tenant.update") == 2 and events.count("user.update") == 1  # refusals change nothing


def test_tenants_users_and_keys_from_the_cli_are_audited_and_verify_catches_an_edit(tmp_path: Path) -> None:
    tenant = cli("tenants", "create", "research", "--model", "openai/tts-1", "--budget-cost", "12.5",
                 state_dir=tmp_path)
    assert tenant.returncode == 0, tenant.stderr
    tenant_id = tenant.stdout.splitlines()[-1]
    assert "budget=12.5 cost per month" in tenant.stdout and "models=openai/tts-1" in tenant.stdout
    user = cli("users", "create", "Ann@Example.com", "--tenant", tenant_id, "--role", "tenant_admin",
               state_dir=tmp_path)
    user_id = user.stdout.splitlines()[-1]
    assert "ann@example.com" in user.stdout and "roles=tenant_admin" in user.stdout
    assert cli("users", "create", "ann@example.com", "--tenant", tenant_id, state_dir=tmp_path).returncode == 1
    assert "unknown role 'root'" in cli("users", "roles", user_id, "-r", "root", state_dir=tmp_path).stderr
    key = cli("keys", "create", "ann's", "--user", user_id, state_dir=tmp_path)
    assert key.returncode == 0 and f"in {tenant_id}" in key.stdout, key.stderr
    assert f"tenant={tenant_id}  user={user_id}" in cli("keys", "list", state_dir=tmp_path).stdout
    deleted = cli("users", "delete", user_id, state_dir=tmp_path)
    assert "1 key(s) revoked" in deleted.stdout
    assert "revoked" in next(line for line in cli("keys", "list", state_dir=tmp_path).stdout.splitlines()
                             if "ann's" in line)
    listed = cli("audit", "list", state_dir=tmp_path).stdout.splitlines()
    assert [line.split()[3] for line in listed] == ["user.delete", "api_key.create", "user.create", "tenant.create"]
    assert "ok: 4 audit event(s)" in cli("audit", "verify", state_dir=tmp_path).stdout
    with sqlite3.connect(tmp_path / "appliance.db") as db:
        db.execute("DROP TRIGGER audit_log_no_delete")
        first = db.execute("SELECT id FROM audit_log WHERE seq = 2").fetchone()[0]
        db.execute("DELETE FROM audit_log WHERE seq = 2")
    caught = cli("audit", "verify", state_dir=tmp_path)
    assert caught.returncode == 1 and "event #3" in caught.stderr and "missing (deleted)" in caught.stderr
    assert first not in caught.stderr  # the deleted one is gone: the first event after the gap is named


def test_tiny_models_are_a_valid_catalogue_that_checks_clean(tiny_catalogue: Path, tmp_path: Path) -> None:
    result = cli("models", "check", "--config", str(tiny_catalogue), state_dir=tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 with problems" in result.stdout
    listing = cli("models", "list", "--config", str(tiny_catalogue), state_dir=tmp_path).stdout
    assert "openai/text-embedding-3-small" in listing


def test_models_check_names_each_problem(tmp_path: Path) -> None:
    config = tmp_path / "models.toml"
    config.write_text('[settings]\ngpu_memory_gb = 10\n[[model]]\nslug = "acme/big"\nmodality = "embedding"\n'
                      'engine = "sentence-transformers"\npath = "/nowhere"\ngpu_memory_gb = 80\n')
    result = cli("models", "check", "--config", str(config), state_dir=tmp_path)
    assert result.returncode == 1
    assert "BAD acme/big" in result.stdout
    assert "path /nowhere does not exist" in result.stdout
    assert "gpu_memory_gb 80 exceeds the box's 10" in result.stdout


def test_the_demo_prints_curl_lines_that_work(tiny_catalogue: Path, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    demo = subprocess.Popen([sys.executable, "-m", "appliance.cli", "demo", "--port", str(port), "--state-dir",
                             str(tmp_path), "--models-dir", str(tiny_catalogue.parent)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    try:
        lines: queue.Queue[str] = queue.Queue()
        assert demo.stdout is not None
        threading.Thread(target=lambda: [lines.put(line) for line in demo.stdout], daemon=True).start()  # type: ignore[union-attr]
        seen: list[str] = []
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not any(line.strip().startswith("curl ") for line in seen):
            try:
                seen.append(lines.get(timeout=1.0))
            except queue.Empty:
                if demo.poll() is not None:
                    break
        curls = [line.strip() for line in seen if line.strip().startswith("curl ")]
        assert curls, "".join(seen)[-3000:]
        assert any(line.startswith("API key: sgk_") for line in seen)
        console = next(line.split()[1] for line in seen if line.startswith("Console: "))
        page = subprocess.run(["curl", "-sfL", console], capture_output=True, text=True, timeout=30).stdout
        assert "<title>Appliance console</title>" in page
        while not seen[-1].startswith("Stop with Ctrl-C."):  # one curl line per modality, one for a budgeted key
            seen.append(lines.get(timeout=30))
            if seen[-1].strip().startswith("curl "):
                curls.append(seen[-1].strip())
        assert len(curls) == 8, curls

        def named(curl: str) -> str:
            return ("vision" if '"image_url"' in curl else "hearing" if '"input_audio"' in curl
                    else curl.split()[2].rsplit("/", 1)[-1])

        results = {named(curl):
                   subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=120, cwd=tmp_path)
                   for curl in curls}
        embedded = json.loads(results["embed"].stdout)
        assert embedded["status"] == "ok", embedded
        assert [len(item["embedding"]) for item in embedded["data"]["data"]] == [1536, 1536]
        assert results["chat"].stdout.rstrip().endswith("data: [DONE]")
        key = next(line.split()[2] for line in seen if line.startswith("API key: "))
        for name in ("vision", "hearing"):  # the model saw the part: it costs prompt tokens beyond its text's
            answer = json.loads(results[name].stdout)
            assert answer["status"] == "ok", answer
            body = json.loads(shlex.split(next(curl for curl in curls if named(curl) == name))[8])
            body["messages"][0]["content"] = body["messages"][0]["content"][:1]
            text_alone = httpx.post(f"http://127.0.0.1:{port}/v1/inference/chat", json=body, timeout=120,
                                    headers={"Authorization": f"Bearer {key}"}).json()["data"]["usage"]
            assert answer["data"]["usage"]["prompt_tokens"] > text_alone["prompt_tokens"], name
        ranked = json.loads(results["rerank"].stdout)["data"]
        assert ranked["model"] == "scailabs/tiny-rerank" and len(ranked["results"]) == 2
        # Cohere's SDK with only its base URL and the demo's key (issue 26's "done when").
        import cohere

        cohere_answer = cohere.ClientV2(api_key=key, base_url=f"http://127.0.0.1:{port}/oai").rerank(
            model="rerank-v3.5", query="capital of France?", documents=["Berlin", "Paris", "Madrid"], top_n=2)
        assert len(cohere_answer.results) == 2
        image = json.loads(results["generate"].stdout)["data"]["data"][0]
        assert subprocess.run(["curl", "-sf", image["url"]], capture_output=True, timeout=60).stdout[:4] == b"\x89PNG"
        assert results["synthesize"].returncode == 0 and (tmp_path / "hello.mp3").stat().st_size > 0
        budgeted = json.loads(results["api-keys"].stdout)["data"]
        assert budgeted["key"].startswith("sgk_") and budgeted["budget"]["tokens"] == 100
        tenant_keys = {line.split(":")[0].strip(): line.split()[-1] for line in seen if " admin key sgk_" in line}
        assert set(tenant_keys) == {"research", "support"}  # two tenants share the demo, each with its models
        base = console.removesuffix("/console/")
        for name, key in tenant_keys.items():
            headers = {"Authorization": f"Bearer {key}"}
            me = httpx.get(f"{base}/v1/me", headers=headers, timeout=30).json()["data"]
            assert (me["tenant"]["name"], me["role"]) == (name, "tenant_admin")
            models = [m["slug"] for m in httpx.get(f"{base}/v1/models", headers=headers, timeout=30).json()["data"]
                      ["items"]]
            assert ("openai/tts-1" in models) == (name == "support") and "openai/text-embedding-3-small" in models
    finally:
        demo.send_signal(signal.SIGINT)
        try:
            demo.wait(60)
        except subprocess.TimeoutExpired:
            demo.kill()
            pytest.fail("the demo did not stop on Ctrl-C")
