"""An engine's answers as OpenAI's document has them: vLLM's own fields gone, its nulls gone, refusal filled in."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from appliance.serving.answers import clean_answer, clean_frames, cleaned

# vLLM 0.32's answers, as its OpenAI server writes them (compact JSON).
VLLM_CHAT = (b'{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,'
             b'"message":{"role":"assistant","content":"hi","refusal":null,"annotations":null,"audio":null,'
             b'"function_call":null,"reasoning":null},"logprobs":{"content":[{"token":"hi","logprob":-1.0,'
             b'"bytes":[104,105],"top_logprobs":[]}]},"finish_reason":"length","stop_reason":null,"token_ids":null,'
             b'"routed_experts":null}],"service_tier":null,"system_fingerprint":"vllm-0.32.0","usage":{'
             b'"prompt_tokens":3,"total_tokens":4,"completion_tokens":1,"prompt_tokens_details":null,'
             b'"completion_tokens_details":null},"prompt_logprobs":null,"prompt_token_ids":null,"prompt_text":null,'
             b'"kv_transfer_params":null,"ec_transfer_params":null,"metrics":null}')
VLLM_FIRST = (b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
              b'"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],'
              b'"prompt_token_ids":null,"prompt_text":null}\n\n')
VLLM_TOKEN = (b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
              b'"delta":{"content":"hi"},"logprobs":{"content":[{"token":"hi","logprob":-1.0,"bytes":[104,105],'
              b'"top_logprobs":[]}]},"finish_reason":"length","stop_reason":null,"token_ids":null}]}\n\n')
VLLM_TEXT = (b'data: {"id":"t","object":"text_completion","created":1,"model":"m","choices":[{"index":0,'
             b'"text":"el","logprobs":null,"finish_reason":null,"stop_reason":null,"prompt_token_ids":null,'
             b'"token_ids":null}]}\n\n')
DONE = b"data: [DONE]\n\n"

ENGINE_ONLY = ("prompt_token_ids", "prompt_text", "token_ids", "stop_reason", "kv_transfer_params", "routed_experts",
               "prompt_logprobs", "metrics", "service_tier")


def test_a_whole_chat_answer_keeps_openai_s_fields_only() -> None:
    answer = json.loads(clean_answer(VLLM_CHAT))
    assert not any(f'"{key}"' in json.dumps(answer) for key in ENGINE_ONLY)
    choice = answer["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "hi", "refusal": None}
    assert choice["logprobs"]["refusal"] is None and choice["logprobs"]["content"][0]["token"] == "hi"
    assert answer["usage"] == {"prompt_tokens": 3, "total_tokens": 4, "completion_tokens": 1}
    assert answer["system_fingerprint"] == "vllm-0.32.0"


def test_a_message_without_refusal_or_content_gets_them() -> None:
    answer = json.loads(clean_answer(b'{"object":"chat.completion","choices":[{"index":0,"message":{"role":'
                                     b'"assistant","tool_calls":[]},"logprobs":null,"finish_reason":"stop"}]}'))
    assert answer["choices"][0]["message"] == {"role": "assistant", "tool_calls": [], "content": None,
                                               "refusal": None}


def test_what_is_not_a_json_object_goes_as_it_came() -> None:
    assert clean_answer(b"[1, 2]") == b"[1, 2]" and clean_answer(b"{oops") == b"{oops"


def test_stream_frames_are_cleaned_as_bytes_and_stay_valid_json() -> None:
    out = clean_frames(VLLM_FIRST + VLLM_TOKEN + VLLM_TEXT + DONE)
    frames = out.split(b"\n\n")
    assert frames[-2:] == [b"data: [DONE]", b""]
    chunks = [json.loads(frame.removeprefix(b"data: ")) for frame in frames[:-2]]
    assert not any(f'"{key}"' in out.decode() for key in ENGINE_ONLY)
    assert chunks[1]["choices"][0]["logprobs"]["refusal"] is None
    assert chunks[2]["choices"][0] == {"index": 0, "text": "el", "logprobs": None, "finish_reason": None}


def test_a_frame_with_something_the_bytes_cannot_cut_is_parsed() -> None:
    stopped = VLLM_TOKEN.replace(b'"stop_reason":null', b'"stop_reason":"\\n"')  # a stop string matched
    out = clean_frames(VLLM_FIRST + stopped)
    first, last = (json.loads(frame.removeprefix(b"data: ")) for frame in out.split(b"\n\n")[:-1])
    assert "stop_reason" not in last["choices"][0] and last["choices"][0]["delta"] == {"content": "hi"}
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}


def test_a_remote_server_s_frames_are_each_parsed_and_cleaned() -> None:
    other = (b'data: {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"role": null, '
             b'"content": "hi", "tool_calls": null, "reasoning_content": null}, "logprobs": null, '
             b'"finish_reason": null}], "service_tier": null}\n\n')  # spaced JSON, nulls where the schema has none
    [chunk] = [json.loads(frame.removeprefix(b"data: ")) for frame in
               clean_frames(other, thorough=True).split(b"\n\n")[:-1]]
    assert chunk == {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "hi"},
                                                                     "logprobs": None, "finish_reason": None}]}


def test_a_clean_stream_is_passed_through_untouched() -> None:
    ours = (b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
            b'"delta":{"content":"\\"stop_reason\\":null"},"logprobs":null,"finish_reason":null}]}\n\n')
    assert clean_frames(ours) is ours  # the text of a key inside content is escaped: never taken for the key


def test_closing_the_cleaned_stream_closes_the_relay_s_frames() -> None:
    closed = []

    async def frames() -> AsyncIterator[bytes]:
        try:
            while True:
                yield VLLM_TOKEN
        finally:
            closed.append(True)  # the relay's frames close the upstream connection here: vLLM stops generating

    async def client_leaves_after_one() -> tuple[bytes, list[bool]]:
        stream = cleaned(frames())
        first = await anext(stream)
        await stream.aclose()  # type: ignore[attr-defined]
        return first, list(closed)  # at once, not when the loop shuts down

    first, closed_then = asyncio.run(client_leaves_after_one())
    assert b"token_ids" not in first and closed_then == [True]
