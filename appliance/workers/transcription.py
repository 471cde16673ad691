"""The faster-whisper worker: OpenAI's /v1/audio/transcriptions on a CTranslate2 Whisper model.

Any file PyAV decodes is resampled to 16 kHz mono and transcribed whole:
faster-whisper walks it in 30-second windows, so long recordings are never cut.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO

import numpy as np
from fastapi import Request, Response
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from appliance.catalogue import ModelEntry
from appliance.protocol.audio import AUDIO_DURATION_HEADER, MAX_AUDIO_SECONDS_FIELD, TranscriptionForm, \
    TranscriptionSegment, TranscriptionWord
from appliance.protocol.fields import field_path
from appliance.workers.server import WorkerError, create_worker_app, worker_main
from appliance.workers.transcripts import Result, render
from appliance.workers.whisper_languages import LANGUAGES

log = logging.getLogger("appliance.worker.transcription")

SAMPLE_RATE = 16000
# faster-whisper's own fallback ladder: OpenAI's temperature 0 means "start at 0, go up when the decode looks bad".
FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def decode(file: BinaryIO) -> np.ndarray:
    """16 kHz mono float32 samples of any audio PyAV reads; a WorkerError naming ``file`` otherwise."""
    import av
    from faster_whisper import decode_audio

    try:
        with av.open(file, mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise WorkerError(400, "file: the file has no audio stream.", "file")
        file.seek(0)
        audio = decode_audio(file, sampling_rate=SAMPLE_RATE)
    except WorkerError:
        raise
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        raise WorkerError(400, "file: the file is not audio this appliance can decode (MP3, WAV, OGG, WebM, M4A, "
                               f"FLAC and more are accepted): {_reason(exc)}.", "file") from None
    if audio.size == 0:
        raise WorkerError(400, "file: the file holds no audio samples.", "file")
    return audio


def _reason(exc: Exception) -> str:
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(reason).rstrip(".").lower()


def form_fields(form: Any) -> TranscriptionForm:
    """The non-file fields; OpenAI's SDK sends the granularities as ``timestamp_granularities[]``."""
    fields: dict[str, Any] = {key: value for key, value in form.items() if isinstance(value, str)}
    granularities = form.getlist("timestamp_granularities[]") + form.getlist("timestamp_granularities")
    fields["timestamp_granularities"] = [g for g in granularities if isinstance(g, str) and g]
    try:
        return TranscriptionForm.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = field_path(first["loc"])
        raise WorkerError(400, f"{param}: {first['msg']}", param) from None


def decode_options(options: dict[str, Any]) -> dict[str, Any]:
    """faster-whisper's ``transcribe`` arguments from the model's engine_options (the bench uses them too)."""
    out: dict[str, Any] = {
        "beam_size": int(options.get("beam_size", 5)),
        "vad_filter": bool(options.get("vad_filter", False)),
        "condition_on_previous_text": bool(options.get("condition_on_previous_text", True)),
        "temperature": FALLBACK_TEMPERATURES if options.get("temperature_fallback", True) else 0.0,
    }
    if options.get("max_new_tokens"):
        out["max_new_tokens"] = int(options["max_new_tokens"])
    return out


def build_app(entry: ModelEntry) -> Any:
    import ctranslate2
    from faster_whisper import WhisperModel

    options = entry.engine_options
    device = options.get("device") or ("cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu")
    compute_type = options.get("compute_type") or ("float16" if device == "cuda" else "int8")
    workers = int(options.get("num_workers", 1))
    model = WhisperModel(str(entry.path), device=device, compute_type=compute_type,
                         cpu_threads=int(options.get("cpu_threads", 0)), num_workers=workers, local_files_only=True)
    multilingual = model.model.is_multilingual
    log.info("loaded %s on %s (%s, %s)", entry.path, device, compute_type,
             "multilingual" if multilingual else "English only")
    defaults = decode_options(options)
    engine = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="whisper")

    def check_language(language: str | None) -> None:
        if language is None:
            return
        if language not in LANGUAGES:
            raise WorkerError(400, f"language: '{language}' is not a language Whisper knows; use an ISO-639-1 code "
                                   "such as 'en', 'de' or 'fr'.", "language")
        if not multilingual and language != "en":
            raise WorkerError(400, f"language: model '{entry.slug}' transcribes English only; "
                                   f"'{language}' is not available.", "language")

    def transcribe(file: BinaryIO, req: TranscriptionForm, max_seconds: float | None) -> Result:
        audio = decode(file)
        seconds = audio.size / SAMPLE_RATE
        if max_seconds is not None and seconds > max_seconds:  # before the work: the budget could not pay for it
            raise WorkerError(400, f"{MAX_AUDIO_SECONDS_FIELD}: the audio is {seconds:.3f} s long; the budget has room "
                                   f"for {max_seconds:.3f} s.", MAX_AUDIO_SECONDS_FIELD)
        words = "word" in req.timestamp_granularities
        kwargs = dict(defaults)
        if req.temperature:  # 0 or unset: the fallback ladder, as OpenAI does
            kwargs["temperature"] = req.temperature
        segments, info = model.transcribe(audio, language=req.language, task="transcribe", initial_prompt=req.prompt,
                                          word_timestamps=words, **kwargs)
        duration = float(info.duration)

        def clamp(value: float) -> float:  # an untrained model may place a timestamp past the end
            return round(min(max(float(value), 0.0), duration), 3)

        out: list[TranscriptionSegment] = []
        heard: list[TranscriptionWord] = []
        for s in segments:
            start, end = clamp(s.start), clamp(s.end)
            out.append(TranscriptionSegment(
                id=len(out), seek=int(s.seek), start=start, end=max(start, end), text=s.text,
                tokens=list(s.tokens), temperature=float(s.temperature or 0.0), avg_logprob=float(s.avg_logprob),
                compression_ratio=float(s.compression_ratio), no_speech_prob=float(s.no_speech_prob)))
            heard += [TranscriptionWord(word=w.word, start=clamp(w.start), end=max(clamp(w.start), clamp(w.end)))
                      for w in (s.words or [])]
        return Result(language=LANGUAGES.get(info.language, info.language), duration=duration, segments=out,
                      words=heard)

    app = create_worker_app(entry)

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request) -> Response:
        try:
            form = await request.form(max_files=1, max_fields=32)
        except Exception as exc:  # malformed multipart: the client's fault, said plainly
            raise WorkerError(400, f"body: not a readable multipart/form-data upload ({exc}).", "file") from None
        try:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise WorkerError(400, "file: the audio file is required (a multipart field named 'file').", "file")
            if upload.size == 0:
                raise WorkerError(400, "file: the file is empty.", "file")
            req = form_fields(form)
            check_language(req.language)
            cap = form.get(MAX_AUDIO_SECONDS_FIELD)
            max_seconds = float(cap) if isinstance(cap, str) and cap else None
            result = await asyncio.get_running_loop().run_in_executor(engine, transcribe, upload.file, req,
                                                                      max_seconds)
        finally:
            await form.close()  # the spooled upload's temporary file goes now, not at garbage collection
        body, media_type = render(result, req.response_format, req.timestamp_granularities)
        # The gateway's accounting reads the audio's length here, whatever the format of the transcript.
        return Response(body, media_type=media_type, headers={AUDIO_DURATION_HEADER: f"{result.duration:.3f}"})

    return app


if __name__ == "__main__":
    worker_main(build_app)
