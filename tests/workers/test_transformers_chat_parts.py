"""The transformers chat worker's text handling: stop strings, partial characters, hermes tool calls."""

from __future__ import annotations

import json
from typing import Any

import pytest

from appliance.workers.transformers_chat import TextStream, parse_tool_calls


class Pieces:
    """A stand-in tokenizer whose token i decodes to pieces[i] (the text logic needs nothing more)."""

    def __init__(self, pieces: list[str]) -> None:
        self.pieces = pieces

    def decode(self, ids: list[int]) -> str:
        return "".join(self.pieces[i] for i in ids)


def run(pieces: list[str], stop: list[str]) -> tuple[list[str], str, bool]:
    stream = TextStream(Pieces(pieces), stop)  # type: ignore[arg-type]
    deltas = []
    for index in range(len(pieces)):
        deltas.append(stream.push(index))
        if stream.stopped:
            break
    deltas.append(stream.finish())
    return deltas, "".join(deltas), stream.stopped


def test_without_stops_every_token_is_released_at_once() -> None:
    deltas, text, stopped = run(["Hel", "lo", " world"], [])
    assert deltas[:3] == ["Hel", "lo", " world"] and text == "Hello world" and not stopped


def test_a_stop_string_across_tokens_is_held_back_and_cut() -> None:
    deltas, text, stopped = run(["The ", "E", "ND", " more"], ["END"])
    assert text == "The " and stopped
    assert "E" not in "".join(deltas)


def test_a_partial_stop_that_does_not_complete_is_released() -> None:
    _deltas, text, stopped = run(["a T", "HE", " b"], ["THE END"])
    assert text == "a THE b" and not stopped


def test_an_incomplete_character_waits_for_its_rest() -> None:
    stream = TextStream(Pieces(["ok", "\ufffd", "é"]), [])  # type: ignore[arg-type]
    assert stream.push(0) == "ok"
    assert stream.push(1) == ""


def test_hermes_tool_calls_are_parsed() -> None:
    text = 'Let me look.<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
    content, calls = parse_tool_calls(text)
    assert content == "Let me look."
    assert calls[0]["type"] == "function" and calls[0]["function"]["name"] == "get_weather"
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Oslo"}


def test_text_that_is_no_tool_call_stays_content() -> None:
    for text in ("just words", "<tool_call>not json</tool_call>", '<tool_call>{"no_name": 1}</tool_call>'):
        content: Any
        content, calls = parse_tool_calls(text)
        assert content == text and calls == []


@pytest.mark.parametrize("temperature", [0.0, 1e-252, 1e-6])
def test_a_vanishing_temperature_is_greedy_not_a_crash(temperature: float) -> None:
    import torch

    from appliance.workers.transformers_chat import Engine, Sampling

    engine = Engine.__new__(Engine)  # only the sampler: no model is needed to pick from logits
    engine.torch = torch
    logits = torch.tensor([0.5, 3.0, -1.0, 2.9])
    generator = torch.Generator().manual_seed(0)
    assert engine._pick(logits, Sampling(max_tokens=1, temperature=temperature), generator) == 1
