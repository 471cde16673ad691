"""GET /v1/admin/status and POST /v1/admin/models/{slug}/load|unload on the real appliance (the console's data)."""

from __future__ import annotations

import re
import time

import httpx

from tests.support.appliance import RunningAppliance

EMBED = "openai/text-embedding-3-small"
ADMIN = ("--permission=admin:access", "--permission=models:use")


def state_of(http: httpx.Client, slug: str) -> dict:
    models = http.get("/v1/admin/status").json()["data"]["models"]
    return next(m for m in models if m["slug"] == slug)


def wait_state(http: httpx.Client, slug: str, state: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        model = state_of(http, slug)
        if model["state"] == state:
            return model
        time.sleep(0.2)
    raise AssertionError(f"{slug} did not become {state}: {model}")


def test_status_names_every_model_with_its_state_backends_and_recent_traffic(
        embed_appliance: RunningAppliance) -> None:
    with embed_appliance.client(embed_appliance.create_key(*ADMIN)) as http:
        assert http.post("/v1/inference/embed", json={"model": EMBED, "input": "hello"}).status_code == 200
        status = http.get("/v1/admin/status").json()["data"]
        assert status["version"] and status["ready"] is True
        assert status["ledger"] == {"total_gb": None, "used_gb": 0.0}
        model = next(m for m in status["models"] if m["slug"] == EMBED)
        assert model["state"] == "loaded" and model["engine"] == "sentence-transformers" and model["local"]
        assert [b["state"] for b in model["backends"]] == ["ready"] and model["restarts"] == 0
        deadline = time.monotonic() + 30  # usage rows are written in batches
        while model["recent"]["requests"] == 0 and time.monotonic() < deadline:
            time.sleep(0.5)
            model = state_of(http, EMBED)
        assert model["recent"]["requests"] >= 1 and model["recent"]["mean_latency_ms"] > 0


def test_an_unloaded_model_frees_its_worker_and_loads_again(embed_appliance: RunningAppliance) -> None:
    with embed_appliance.client(embed_appliance.create_key(*ADMIN)) as http:
        unloaded = http.post(f"/v1/admin/models/{EMBED}/unload").json()["data"]
        assert unloaded["action"] == "unload" and unloaded["model"]["state"] == "unloaded"
        # The log names the key that asked, by its id.
        asked = rf"{re.escape(EMBED)}: unloading, as \S+ asked \(0 request\(s\) in flight\)"
        assert re.search(asked, embed_appliance.log())
        assert f"{EMBED}: unloaded" in embed_appliance.log()
        assert http.get("/ready").status_code == 503  # a startup model is down
        loading = http.post(f"/v1/admin/models/{EMBED}/load").json()["data"]
        assert loading["model"]["state"] in ("starting", "loaded")
        wait_state(http, EMBED, "loaded")
        assert http.post("/v1/inference/embed", json={"model": EMBED, "input": "again"}).status_code == 200


def test_only_admin_keys_see_status_or_load_models(embed_appliance: RunningAppliance) -> None:
    with embed_appliance.client(embed_appliance.create_key()) as http:  # models:list and models:use
        for method, path in (("GET", "/v1/admin/status"), ("POST", f"/v1/admin/models/{EMBED}/unload"),
                             ("POST", f"/v1/admin/models/{EMBED}/load")):
            answer = http.request(method, path)
            assert answer.status_code == 403, path
            assert answer.json()["error"]["code"] == "AUTHZ_PERMISSION_DENIED"
    with embed_appliance.client() as http:
        assert http.get("/v1/admin/status").json()["error"]["code"] == "AUTH_TOKEN_MISSING"
    with embed_appliance.client(embed_appliance.create_key(*ADMIN)) as http:
        assert state_of(http, EMBED)["state"] == "loaded"  # the refused unload did nothing


def test_an_unknown_model_is_a_404_in_the_envelope(embed_appliance: RunningAppliance) -> None:
    with embed_appliance.client(embed_appliance.create_key(*ADMIN)) as http:
        answer = http.post("/v1/admin/models/nobody/nothing/load")
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "MODEL_NOT_FOUND" and "nobody/nothing" in answer.json()["error"]["message"]
