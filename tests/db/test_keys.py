"""API keys: sgk_ secrets shown once, only their SHA-256 kept, revocation immediate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from appliance.accounting.store import UsageStore
from appliance.db.database import open_database
from appliance.db.keys import Budget, KeyStore, hash_key


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    return KeyStore(open_database(f"sqlite:///{tmp_path / 'state.db'}"))


def test_a_new_key_is_sgk_and_long_and_only_its_hash_is_stored(store: KeyStore, tmp_path: Path) -> None:
    key, secret = store.create("ci")
    assert secret.startswith("sgk_") and len(secret) >= 4 + 32
    assert key.permissions == ("models:list", "models:use")
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert secret.encode() not in stored
    assert store.verify(secret) == key
    assert hash_key(secret) == __import__("hashlib").sha256(secret.encode()).hexdigest()


def test_revocation_and_expiry_take_effect_at_once(store: KeyStore) -> None:
    key, secret = store.create("ci")
    assert store.revoke(key.id)
    assert store.verify(secret) is None
    assert not store.revoke(key.id)
    _, old = store.create("old", expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert store.verify(old) is None
    assert store.verify("sgk_unknown") is None


def test_permissions_models_and_rate_limit_are_kept(store: KeyStore) -> None:
    key, _ = store.create("narrow", ["models:list"], ["openai/tts-1"], 10)
    assert (key.permissions, key.models, key.rate_limit) == (("models:list",), ("openai/tts-1",), 10)
    assert [k.id for k in store.list()] == [key.id]
    with pytest.raises(ValueError, match="unknown permission 'models:fly'"):
        store.create("bad", ["models:fly"])
    with pytest.raises(ValueError, match="rate limit"):
        store.create("bad", rate_limit=0)


def test_a_revocation_by_another_process_is_seen_on_the_next_verify(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    gateway, cli = KeyStore(open_database(url)), KeyStore(open_database(url))
    key, secret = cli.create("ci")
    assert gateway.verify(secret) == key
    assert gateway.verify(secret) == key  # remembered
    cli.revoke(key.id)
    assert gateway.verify(secret) is None


def test_a_change_by_another_process_is_seen_and_usage_writes_keep_the_cache(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    gateway, cli = KeyStore(open_database(url)), KeyStore(open_database(url))
    key, secret = cli.create("ci", budget=Budget("day", tokens=100))
    assert gateway.verify(secret) == key
    UsageStore(gateway.engine).add_many([usage_row(key.id)])  # a commit, but not to the keys
    assert not gateway._changes.changed()
    cli.update(key.id, rate_limit=9, budget=Budget("week", images=2))
    seen = gateway.verify(secret)
    assert seen is not None and seen.rate_limit == 9 and seen.budget == Budget("week", images=2)


def usage_row(key_id: str) -> dict[str, object]:
    return {"id": "usage_1", "created_at": datetime.now(UTC), "request_id": "req_1", "key_id": key_id,
            "model": "m", "backend_id": "b", "route": "/v1/inference/chat", "status_code": 200, "error_code": None,
            "latency_ms": 1.0, "tokens_in": 1, "tokens_out": 1, "images": 0, "image_size": None,
            "audio_seconds_in": 0.0, "audio_seconds_out": 0.0, "characters": 0}
