"""Helpers of the batch tests: JSONL inputs, waiting for a batch, reading its result files."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import httpx

EMBED = "openai/text-embedding-3-small"
CHAT = "scailabs/tiny-chat"
DONE = ("completed", "failed", "expired", "cancelled")


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def b64(lines: list[dict[str, Any]]) -> str:
    return base64.b64encode(jsonl(lines)).decode()


def embed_line(custom_id: str, text: str = "hello", url: str = "/v1/inference/embed",
               model: str = EMBED) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": {"model": model, "input": text}}


def chat_line(custom_id: str, url: str = "/v1/inference/chat", max_tokens: int = 4) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": url,
            "body": {"model": CHAT, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": max_tokens}}


def wait_batch(http: httpx.Client, batch_id: str, until: tuple[str, ...] = DONE, timeout: float = 240,
               path: str = "/v1/inference/batch/") -> dict[str, Any]:
    """The batch once its status is one of ``until``."""
    deadline = time.monotonic() + timeout
    while True:
        answer = http.get(path + batch_id)
        assert answer.status_code == 200, answer.text
        batch = answer.json()
        batch = batch.get("data", batch)
        if batch["status"] in until or time.monotonic() > deadline:
            assert batch["status"] in until, batch
            return batch
        time.sleep(0.3)


def read_lines(url: str) -> list[dict[str, Any]]:
    """A result file fetched by its media URL, with no key (the token is the credential)."""
    try:
        answer = httpx.get(url, timeout=30)
    except httpx.ConnectError as exc:
        raise AssertionError(url) from exc
    assert answer.status_code == 200, answer.text
    return [json.loads(line) for line in answer.text.splitlines() if line.strip()]
