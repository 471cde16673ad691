"""The Piper worker: OpenAI's /v1/audio/speech, streamed sentence by sentence.

The model's ``path`` is one Piper voice (``NAME.onnx`` next to
``NAME.onnx.json``) or a directory of them. Clients pick a voice by its own
name (``NAME``, ``NAME:SPEAKER`` or a speaker's name) or by one of OpenAI's
six names, which ``engine_options.voices`` maps (``alloy = "NAME:SPEAKER"``);
OpenAI names left unmapped go to the first voice, spread over its speakers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request, Response
from fastapi.responses import StreamingResponse

from appliance.catalogue import ModelEntry
from appliance.protocol.audio import SPEECH_MEDIA_TYPES, SpeechRequest, speech_sample_rate
from appliance.workers.server import WorkerError, create_worker_app, worker_main

log = logging.getLogger("appliance.worker.speech")

OPENAI_VOICES = ("alloy", "echo", "fable", "onyx", "nova", "shimmer")


@dataclass(frozen=True)
class VoiceChoice:
    name: str  # the Piper voice file's name
    speaker_id: int | None


def voice_files(path: Path) -> list[Path]:
    files = [path] if path.suffix == ".onnx" else sorted(path.glob("*.onnx"))
    if not files:
        raise RuntimeError(f"no Piper voice (*.onnx with its .onnx.json) in {path}")
    return files


def _parse_choice(spec: Any, speakers: dict[str, dict[str, int]]) -> VoiceChoice:
    """``"NAME"``, ``"NAME:SPEAKER"`` (a speaker's name or number) or ``{voice = NAME, speaker = …}``."""
    if isinstance(spec, dict):
        name, speaker = str(spec.get("voice", "")), spec.get("speaker")
    else:
        name, _, speaker = str(spec).partition(":")
        speaker = speaker or None
    if name not in speakers:
        raise RuntimeError(f"engine_options.voices: no voice '{name}'; installed: {', '.join(sorted(speakers))}")
    table = speakers[name]
    if speaker is None:
        return VoiceChoice(name, None)
    if str(speaker) in table:
        return VoiceChoice(name, table[str(speaker)])
    if str(speaker).isdigit() and int(speaker) in table.values():
        return VoiceChoice(name, int(speaker))
    raise RuntimeError(f"engine_options.voices: voice '{name}' has no speaker '{speaker}'")


def voice_table(speakers: dict[str, dict[str, int]], mapping: dict[str, Any]) -> dict[str, VoiceChoice]:
    """Every name a client may send, onto a voice and speaker. ``speakers``: voice → {speaker name: id}."""
    table: dict[str, VoiceChoice] = {}
    for name, ids in speakers.items():
        table[name] = VoiceChoice(name, None)
        for speaker, sid in ids.items():
            table[f"{name}:{speaker}"] = VoiceChoice(name, sid)
    bare: dict[str, list[VoiceChoice]] = {}
    for name, ids in speakers.items():
        for speaker, sid in ids.items():
            bare.setdefault(speaker, []).append(VoiceChoice(name, sid))
    for speaker, choices in bare.items():
        if len(choices) == 1 and speaker not in table:
            table[speaker] = choices[0]
    first = next(iter(speakers))
    first_ids = sorted(speakers[first].values()) or [None]
    for index, openai_name in enumerate(OPENAI_VOICES):
        table[openai_name] = VoiceChoice(first, first_ids[index % len(first_ids)])
    for client_name, spec in mapping.items():
        table[client_name] = _parse_choice(spec, speakers)
    return table


def synthesize_chunks(voice: Any, req: SpeechRequest, speaker_id: int | None, out_rate: int) -> Iterator[bytes]:
    """The encoded audio of ``req``, sentence by sentence, then the container's tail.

    Lazy: each sentence is synthesised only when the pieces before it were
    taken, so the first piece is ready after the first sentence, whatever the
    length of the text.
    """
    from piper.config import SynthesisConfig

    from appliance.workers.audio_encoding import StreamEncoder

    config = SynthesisConfig(speaker_id=speaker_id, length_scale=voice.config.length_scale / req.speed)
    encoder = StreamEncoder(req.response_format, voice.config.sample_rate, out_rate)
    spoken = False
    try:
        slice_len = max(voice.config.sample_rate // 4, 1)
        for chunk in _sentences(voice, req.input, config):
            samples = chunk.audio_int16_array
            spoken = spoken or len(samples) > 0
            # Encoded a quarter second at a time, so the first bytes leave before the sentence is all encoded.
            for start in range(0, len(samples), slice_len):
                piece = encoder.add(samples[start:start + slice_len])
                if piece:
                    yield piece
        if not spoken:  # before any byte: the client gets an error, never an empty "success"
            raise WorkerError(400, "input: the text has nothing to pronounce (only punctuation or symbols?), "
                                   "so no audio was made; send words.", "input")
        yield encoder.finish()
    finally:
        encoder.close()


def _sentences(voice: Any, text: str, config: Any) -> Iterator[Any]:
    """Piper's audio chunks; espeak-ng's refusal of a text (a NUL byte, say) is the client's input error."""
    chunks = voice.synthesize(text, config)
    while True:
        try:
            chunk = next(chunks)
        except StopIteration:
            return
        except ValueError as exc:
            raise WorkerError(400, f"input: the text cannot be read aloud ({exc}).", "input") from None
        yield chunk


def build_app(entry: ModelEntry) -> Any:
    import onnxruntime
    from piper import PiperVoice

    assert entry.path is not None
    options = entry.engine_options
    use_cuda = options.get("device", "auto") == "cuda" or (
        options.get("device", "auto") == "auto" and "CUDAExecutionProvider" in onnxruntime.get_available_providers())
    voices = {f.stem: PiperVoice.load(f, use_cuda=use_cuda) for f in voice_files(Path(entry.path))}
    speakers = {name: dict(voice.config.speaker_id_map) if voice.config.num_speakers > 1 else {}
                for name, voice in voices.items()}
    table = voice_table(speakers, dict(options.get("voices", {})))
    out_rate = speech_sample_rate(options)
    log.info("loaded voices %s (%s); %d voice names", ", ".join(voices), "cuda" if use_cuda else "cpu", len(table))
    # espeak-ng (Piper's phonemiser) is not thread-safe: one engine thread, sentences of requests interleave.
    engine = ThreadPoolExecutor(max_workers=1, thread_name_prefix="piper")
    done = object()
    app = create_worker_app(entry)

    @app.post("/v1/audio/speech")
    async def speech(request: Request) -> Response:
        req = SpeechRequest.model_validate_json(await request.body())
        choice = table.get(req.voice)
        if choice is None:
            names = ", ".join(sorted(table))
            raise WorkerError(400, f"voice: '{req.voice}' is not a voice of model '{entry.slug}'; "
                                   f"available: {names}.", "voice")
        loop = asyncio.get_running_loop()
        pieces = synthesize_chunks(voices[choice.name], req, choice.speaker_id, out_rate)
        # The first sentence is made before answering: a failure is still a clean error, not a cut stream.
        first = await loop.run_in_executor(engine, next, pieces, done)

        async def stream() -> AsyncIterator[bytes]:
            try:
                piece = first
                while piece is not done:
                    if piece:
                        yield piece  # type: ignore[misc]
                    piece = await loop.run_in_executor(engine, next, pieces, done)
            finally:  # queued on the engine thread, after a sentence it may still be making for a gone client
                loop.run_in_executor(engine, pieces.close)

        return StreamingResponse(stream(), media_type=SPEECH_MEDIA_TYPES[req.response_format])

    return app


if __name__ == "__main__":
    worker_main(build_app)
