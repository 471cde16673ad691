"""The transformers chat worker: OpenAI's /v1/chat/completions and /v1/completions over any causal LM.

For CPU boxes without vLLM. It renders the model's own chat template (tools
included), samples token by token on one engine thread (a per-request seed
makes it repeatable), streams as it goes, and stops on the model's stop
tokens, a ``stop`` string or ``max_tokens``. Tool calls in the hermes format
(``<tool_call>{"name", "arguments"}</tool_call>``) are parsed when tools are
given; forcing a tool (``required`` or a named tool) needs a grammar, which
only the vLLM engine has.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request, Response
from fastapi.responses import StreamingResponse

from appliance.catalogue import ModelEntry
from appliance.protocol.chat import ChatRequest, CompletionRequest, TokenizeRequest, TokenizeResponse
from appliance.workers.server import WorkerError, create_worker_app, worker_main

log = logging.getLogger("appliance.worker.transformers")

# vLLM's threshold too: a smaller temperature is greedy (dividing the logits by 1e-252 overflows to inf and NaN).
GREEDY_BELOW = 1e-5
TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


@dataclass
class Sampling:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)


@dataclass
class Generation:
    """One request's tokens as they come, and the switch that stops the engine early."""

    queue: asyncio.Queue[int | None]
    cancelled: threading.Event = field(default_factory=threading.Event)
    finish_reason: str = "length"


class Engine:
    """A causal LM sampled token by token on one thread; the event loop receives tokens through a queue."""

    def __init__(self, entry: ModelEntry) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        options = entry.engine_options
        if "threads" in options:
            torch.set_num_threads(int(options["threads"]))
        self.torch = torch
        self.device = options.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(str(entry.path), local_files_only=True)
        dtype = getattr(torch, str(options.get("dtype", "float32")))
        self.model = AutoModelForCausalLM.from_pretrained(str(entry.path), local_files_only=True, dtype=dtype)
        self.model.to(self.device).eval()
        config_window = getattr(self.model.config, "max_position_embeddings", None)
        self.context_window = int(entry.context_window or config_window or 2048)
        eos = self.model.generation_config.eos_token_id
        self.stop_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            self.stop_ids.add(self.tokenizer.eos_token_id)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="generate")
        # Prompts are tokenized off the event loop (a long one takes seconds; health checks must still be answered),
        # by a copy of the tokenizer: a fast tokenizer used from two threads at once fails.
        self._prompter = copy.deepcopy(self.tokenizer)
        self._tokenizing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenize")

    async def render(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> list[int]:
        def run() -> list[int]:
            text = self._prompter.apply_chat_template(messages, tools=tools, add_generation_prompt=True,
                                                      tokenize=False)
            return list(self._prompter(text, add_special_tokens=False)["input_ids"])

        return await asyncio.get_running_loop().run_in_executor(self._tokenizing, run)

    async def encode(self, text: str) -> list[int]:
        return await asyncio.get_running_loop().run_in_executor(
            self._tokenizing, lambda: list(self._prompter(text, add_special_tokens=False)["input_ids"]))

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def start(self, prompt_ids: list[int], sampling: Sampling) -> Generation:
        loop = asyncio.get_running_loop()
        generation = Generation(asyncio.Queue())

        def emit(token: int | None) -> None:
            loop.call_soon_threadsafe(generation.queue.put_nowait, token)

        def run() -> None:
            try:
                generation.finish_reason = self._sample(prompt_ids, sampling, emit, generation.cancelled)
            except Exception:
                log.exception("generation failed")
                generation.finish_reason = "error"
            finally:
                emit(None)

        self._thread.submit(run)
        return generation

    def _sample(self, prompt_ids: list[int], sampling: Sampling, emit: Callable[[int | None], None],
                cancelled: threading.Event) -> str:
        torch = self.torch
        generator = torch.Generator(device=self.device)
        generator.manual_seed(sampling.seed if sampling.seed is not None else int(time.time_ns() % 2**63))
        inputs = torch.tensor([prompt_ids], device=self.device)
        past = None
        with torch.inference_mode():
            for _ in range(sampling.max_tokens):
                if cancelled.is_set():
                    return "cancelled"
                output = self.model(input_ids=inputs, past_key_values=past, use_cache=True)
                past = output.past_key_values
                token = self._pick(output.logits[0, -1].float(), sampling, generator)
                if token in self.stop_ids:
                    return "stop"
                emit(token)
                inputs = torch.tensor([[token]], device=self.device)
        return "length"

    def _pick(self, logits: Any, sampling: Sampling, generator: Any) -> int:
        torch = self.torch
        if sampling.temperature < GREEDY_BELOW:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits / sampling.temperature, dim=-1)
        if sampling.top_p < 1:
            sorted_probs, order = torch.sort(probs, descending=True)
            outside = torch.cumsum(sorted_probs, dim=-1) - sorted_probs > sampling.top_p
            sorted_probs[outside] = 0
            probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
        return int(torch.multinomial(probs, 1, generator=generator))


class ClosingStreamingResponse(StreamingResponse):
    """Closes its body when the response ends, even when a client that left cancelled it mid-``yield``."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()  # type: ignore[attr-defined]


class TextStream:
    """Decoded text of a growing token list, released only where no stop string or partial character can begin."""

    def __init__(self, engine: Engine, stop: list[str]) -> None:
        self.engine = engine
        self.stop = stop
        self.ids: list[int] = []
        self.sent = 0
        self.stopped = False

    def push(self, token: int) -> str:
        self.ids.append(token)
        text = self.engine.decode(self.ids)
        for stop in self.stop:
            at = text.find(stop)
            if at >= 0:
                self.stopped = True
                return self._release(text[:at])
        safe = len(text)
        while safe > self.sent and text[safe - 1] == "\ufffd":  # a character still incomplete
            safe -= 1
        for stop in self.stop:  # hold back a tail that may become a stop string
            for size in range(min(len(stop) - 1, safe - self.sent), 0, -1):
                if stop.startswith(text[safe - size:safe]):
                    safe -= size
                    break
        return self._release(text[:safe])

    def finish(self) -> str:
        return "" if self.stopped else self._release(self.engine.decode(self.ids))

    def _release(self, text: str) -> str:
        delta, self.sent = text[self.sent:], max(self.sent, len(text))
        return delta


def parse_tool_calls(text: str) -> tuple[str | None, list[dict[str, Any]]]:
    """Content before the first ``<tool_call>`` and the calls that parse; unparsable calls stay content."""
    calls = []
    for match in TOOL_CALL.finditer(text):
        try:
            call = json.loads(match.group(1))
            name, arguments = call["name"], call.get("arguments", {})
        except (ValueError, KeyError, TypeError):
            return text, []
        calls.append({"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
                      "function": {"name": str(name), "arguments": json.dumps(arguments, ensure_ascii=False)}})
    if not calls:
        return text, []
    content = text[:text.find("<tool_call>")].strip()
    return content or None, calls


def _stop_list(stop: str | list[str] | None) -> list[str]:
    return [stop] if isinstance(stop, str) else list(stop or [])


def build_app(entry: ModelEntry) -> Any:
    engine = Engine(entry)
    app = create_worker_app(entry)

    def sampling_of(req: ChatRequest | CompletionRequest, prompt_len: int, default_max: int, field: str) -> Sampling:
        if req.n != 1:
            raise WorkerError(400, "n: this engine makes one choice per request; send n = 1.", "n")
        max_tokens = req.max_tokens or default_max
        if prompt_len + max_tokens > engine.context_window:
            raise WorkerError(400, f"This model's maximum context length is {engine.context_window} tokens. "
                                   f"However, you requested {prompt_len + max_tokens} tokens ({prompt_len} in the "
                                   f"{field}, {max_tokens} in the completion).", field,
                              code="context_length_exceeded")
        return Sampling(max_tokens=max_tokens, temperature=1.0 if req.temperature is None else req.temperature,
                        top_p=1.0 if req.top_p is None else req.top_p, seed=req.seed, stop=_stop_list(req.stop))

    async def tokens(generation: Generation) -> AsyncIterator[int]:
        try:
            while (token := await generation.queue.get()) is not None:
                yield token
            if generation.finish_reason == "error":
                raise WorkerError(500, "The model failed while generating.", error_type="server_error")
        finally:
            generation.cancelled.set()  # the client left or a stop string matched: free the engine

    @app.post("/tokenize")
    async def tokenize(request: Request) -> Response:
        """vLLM's endpoint: the gateway counts a prompt with it before reserving a token budget."""
        req = TokenizeRequest.model_validate_json(await request.body())
        if req.messages is not None:
            tools = [tool.model_dump(exclude_none=True) for tool in req.tools or []] or None
            ids = await engine.render([message.model_dump(exclude_none=True) for message in req.messages], tools)
        else:
            ids = await engine.encode(req.prompt or "")
        answer = TokenizeResponse(count=len(ids), max_model_len=engine.context_window)
        return Response(answer.model_dump_json(), media_type="application/json")

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        req = ChatRequest.model_validate_json(await request.body())
        tools_on = bool(req.tools) and req.tool_choice != "none"
        if tools_on and req.tool_choice not in (None, "auto"):
            raise WorkerError(400, "tool_choice: forcing a tool needs grammar-constrained decoding, which this "
                                   "transformers engine lacks; use 'auto', or serve the model with vLLM.", "tool_choice")
        messages = [message.model_dump(exclude_none=True) for message in req.messages]
        tools = [tool.model_dump(exclude_none=True) for tool in req.tools or []] if tools_on else None
        prompt = await engine.render(messages, tools)
        sampling = sampling_of(req, len(prompt), engine.context_window - len(prompt), "messages")
        ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        generation = engine.start(prompt, sampling)
        text = TextStream(engine, sampling.stop)

        def usage() -> dict[str, int]:
            return {"prompt_tokens": len(prompt), "completion_tokens": len(text.ids),
                    "total_tokens": len(prompt) + len(text.ids)}

        def finish_reason() -> str:
            return "stop" if text.stopped else generation.finish_reason

        def chunk(delta: dict[str, Any], reason: str | None = None) -> bytes:
            body = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": entry.slug,
                    "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}]}
            return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"

        if not req.stream:
            content = "".join([text.push(token) async for token in _until_stopped(tokens(generation), text)])
            content += text.finish()
            message: dict[str, Any] = {"role": "assistant", "content": content}
            reason = finish_reason()
            if tools_on:
                message["content"], calls = parse_tool_calls(content)
                if calls:
                    message["tool_calls"], reason = calls, "tool_calls"
            body = {"id": ident, "object": "chat.completion", "created": created, "model": entry.slug,
                    "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": reason}],
                    "usage": usage()}
            return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")

        async def chat_frames() -> AsyncIterator[bytes]:
            yield chunk({"role": "assistant", "content": ""})
            if tools_on:  # tool calls are known only at the end: send the whole message then
                content = "".join([text.push(token) async for token in _until_stopped(tokens(generation), text)])
                content += text.finish()
                content_part, calls = parse_tool_calls(content)
                if content_part:
                    yield chunk({"content": content_part})
                for index, call in enumerate(calls):
                    yield chunk({"tool_calls": [{"index": index, **call}]})
                reason = "tool_calls" if calls else finish_reason()
            else:
                async for token in _until_stopped(tokens(generation), text):
                    delta = text.push(token)
                    if delta:
                        yield chunk({"content": delta})
                tail = text.finish()
                if tail:
                    yield chunk({"content": tail})
                reason = finish_reason()
            yield chunk({}, reason)
            if req.stream_options and req.stream_options.include_usage:
                body = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": entry.slug,
                        "choices": [], "usage": usage()}
                yield b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"
            yield b"data: [DONE]\n\n"

        return ClosingStreamingResponse(_cancelling(chat_frames(), generation), media_type="text/event-stream")

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        req = CompletionRequest.model_validate_json(await request.body())
        if isinstance(req.prompt, list) and req.prompt and isinstance(req.prompt[0], str):
            if len(req.prompt) != 1:
                raise WorkerError(400, "prompt: this engine takes one prompt per request.", "prompt")
            prompt = await engine.encode(str(req.prompt[0]))
        elif isinstance(req.prompt, list):
            prompt = [int(token) for token in req.prompt]
            vocabulary = engine.model.get_input_embeddings().num_embeddings
            unknown = next((token for token in prompt if token >= vocabulary), None)
            if unknown is not None:  # the embedding lookup would fail mid-generation
                raise WorkerError(400, f"prompt: token id {unknown} is not in the model's vocabulary "
                                       f"(0 to {vocabulary - 1}).", "prompt")
        else:
            prompt = await engine.encode(req.prompt)
        sampling = sampling_of(req, len(prompt), 16, "prompt")  # 16: OpenAI's default for completions
        ident, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        generation = engine.start(prompt, sampling)
        text = TextStream(engine, sampling.stop)
        echo = engine.decode(prompt) if req.echo else ""

        def choice(piece: str, reason: str | None) -> dict[str, Any]:
            return {"index": 0, "text": piece, "logprobs": None, "finish_reason": reason}

        if not req.stream:
            content = "".join([text.push(token) async for token in _until_stopped(tokens(generation), text)])
            content += text.finish()
            reason = "stop" if text.stopped else generation.finish_reason
            body = {"id": ident, "object": "text_completion", "created": created, "model": entry.slug,
                    "choices": [choice(echo + content, reason)],
                    "usage": {"prompt_tokens": len(prompt), "completion_tokens": len(text.ids),
                              "total_tokens": len(prompt) + len(text.ids)}}
            return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")

        def chunk(piece: str, reason: str | None = None) -> bytes:
            body = {"id": ident, "object": "text_completion", "created": created, "model": entry.slug,
                    "choices": [choice(piece, reason)]}
            return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"

        async def text_frames() -> AsyncIterator[bytes]:
            if echo:
                yield chunk(echo)
            async for token in _until_stopped(tokens(generation), text):
                delta = text.push(token)
                if delta:
                    yield chunk(delta)
            tail = text.finish()
            yield chunk(tail, "stop" if text.stopped else generation.finish_reason)
            if req.stream_options and req.stream_options.include_usage:
                body = {"id": ident, "object": "text_completion", "created": created, "model": entry.slug,
                        "choices": [], "usage": {"prompt_tokens": len(prompt), "completion_tokens": len(text.ids),
                                                 "total_tokens": len(prompt) + len(text.ids)}}
                yield b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"
            yield b"data: [DONE]\n\n"

        return ClosingStreamingResponse(_cancelling(text_frames(), generation), media_type="text/event-stream")

    return app


async def _cancelling(frames: AsyncIterator[bytes], generation: Generation) -> AsyncIterator[bytes]:
    """The frames; once they end, or the client leaves, the generation stops: no tokens for nobody."""
    try:
        async for frame in frames:
            yield frame
    finally:
        generation.cancelled.set()


async def _until_stopped(tokens: AsyncIterator[int], text: TextStream) -> AsyncIterator[int]:
    """The tokens, until a stop string has matched (the rest are not wanted)."""
    async for token in tokens:
        yield token
        if text.stopped:
            await tokens.aclose()  # type: ignore[attr-defined]
            return


if __name__ == "__main__":
    worker_main(build_app)
