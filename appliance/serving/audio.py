"""The audio services: transcription (an uploaded file to text) and speech (text to audio bytes, streamed).

A transcription's length is known only once the worker decoded the audio: it
reserves ``TRANSCRIPTION_RESERVE_S`` (a key with less left is refused at
once), the worker refuses audio longer than the budget had room for, and the
call is charged the real length after.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import BinaryIO

import aiohttp
from pydantic import ValidationError

from appliance.accounting.units import SPEECH_CHARS_PER_SECOND, speech_seconds
from appliance.catalogue import ModelEntry
from appliance.protocol.audio import (AUDIO_DURATION_HEADER, MAX_AUDIO_SECONDS_FIELD, SPEECH_MEDIA_TYPES,
                                      TRANSCRIPT_MEDIA_TYPES, SpeechRequest, TranscriptionForm, speech_sample_rate)
from appliance.serving.context import Call
from appliance.serving.errors import ApiError, from_errors
from appliance.serving.metering import Meter, over_room, reserve
from appliance.serving.models import resolve_model
from appliance.serving.relay import Answer, open_stream, post
from appliance.serving.streaming import Stream

TEXT_FORMATS = ("text", "srt", "vtt")
TRANSCRIPTION_RESERVE_S = 1.0


@dataclass
class AudioFile:
    """An uploaded audio file, as the transcription service takes it."""

    file: BinaryIO
    filename: str
    content_type: str


@dataclass
class Transcript:
    """The worker's transcript: JSON (``json``, ``verbose_json``) or the text file (``text``, ``srt``, ``vtt``)."""

    content: bytes
    media_type: str
    response_format: str

    @property
    def is_text(self) -> bool:
        return self.response_format in TEXT_FORMATS


def transcription_form(fields: dict[str, str | list[str]], default_format: str) -> TranscriptionForm:
    """The form's text fields as the contract's model (``timestamp_granularities[]`` as a list)."""
    values: dict[str, object] = dict(fields)
    granularities = values.pop("timestamp_granularities[]", None) or values.pop("timestamp_granularities", None)
    values["timestamp_granularities"] = [granularities] if isinstance(granularities, str) else granularities or []
    if not values.get("response_format"):
        values["response_format"] = default_format
    try:
        return TranscriptionForm.model_validate(values)
    except ValidationError as exc:
        raise from_errors(list(exc.errors())) from None


def _worker_fields(form: TranscriptionForm, served_model: str) -> dict[str, str | list[str]]:
    fields: dict[str, str | list[str]] = {"model": served_model, "response_format": form.response_format}
    if form.language:
        fields["language"] = form.language
    if form.temperature is not None:
        fields["temperature"] = str(form.temperature)
    if form.prompt:
        fields["prompt"] = form.prompt
    if form.timestamp_granularities:
        fields["timestamp_granularities[]"] = list(form.timestamp_granularities)
    return fields


async def transcribe(call: Call, form: TranscriptionForm, audio: AudioFile) -> Transcript:
    """Resolve the model, reserve, send the file to the engine; its transcript, charged its real length."""
    entry = resolve_model(call, form.model, "transcription")
    meter = await reserve(call, "audio_seconds", TRANSCRIPTION_RESERVE_S, entry)
    fields = _worker_fields(form, entry.served_model)
    room = meter.room("audio_seconds")
    if room is not None:  # the worker refuses audio longer than any scope's budget has room for
        fields[MAX_AUDIO_SECONDS_FIELD] = f"{room:.3f}"
    try:
        answer = await _post_form(call, entry, "/audio/transcriptions", audio, fields,
                                  json_answer=form.response_format not in TEXT_FORMATS)
    except ApiError as exc:
        if exc.details and exc.details[0]["field"] == MAX_AUDIO_SECONDS_FIELD:
            raise over_room(meter, "audio_seconds", _seconds_in(exc.message)) from None
        raise
    meter.units.audio_seconds_in = float(answer.headers.get(AUDIO_DURATION_HEADER) or 0.0)
    meter.units.known = True
    return Transcript(answer.body, answer.content_type or TRANSCRIPT_MEDIA_TYPES[form.response_format],
                      form.response_format)


async def _post_form(call: Call, entry: ModelEntry, path: str, audio: AudioFile,
                     fields: dict[str, str | list[str]], json_answer: bool) -> Answer:
    """POST the file and ``fields`` to a backend as multipart; its error answers raise their ApiError."""

    def form() -> aiohttp.FormData:  # made anew for each backend tried: a form can be sent once
        data = aiohttp.FormData()
        for name, value in fields.items():
            for item in value if isinstance(value, list) else [value]:
                data.add_field(name, item)
        audio.file.seek(0)
        data.add_field("file", audio.file, filename=audio.filename or "audio",
                       content_type=audio.content_type or "application/octet-stream")
        return data

    return await post(call, entry, path, form, content_type=None, json_answer=json_answer)


def _seconds_in(message: str) -> float:
    """The audio's length in the worker's refusal ("the audio is 2.000 s long; …")."""
    words = message.split("the audio is ", 1)[-1].split()
    return float(words[0]) if words and words[0].replace(".", "", 1).isdigit() else 0.0


async def synthesize(call: Call, body: SpeechRequest) -> Stream:
    """Resolve the model, reserve, and stream the engine's audio, counted as it goes."""
    entry = resolve_model(call, body.model, "speech")
    meter = await reserve(call, "audio_seconds", len(body.input) / SPEECH_CHARS_PER_SECOND / body.speed, entry)
    payload = body.model_copy(update={"model": entry.served_model}).model_dump_json(exclude_none=True)
    chunks, _media_type = await open_stream(call, entry, "/audio/speech", payload.encode())
    counted = _counting(chunks, meter, body, speech_sample_rate(entry.engine_options))
    return Stream(counted, SPEECH_MEDIA_TYPES[body.response_format])


async def _counting(chunks: AsyncIterator[bytes], meter: Meter, body: SpeechRequest,
                    sample_rate: int) -> AsyncIterator[bytes]:
    """The speech bytes, counted into the call's meter as they go (its seconds out, when they end)."""
    sent = 0
    meter.units.characters = len(body.input)
    try:
        async with contextlib.aclosing(chunks):  # type: ignore[type-var]
            async for chunk in chunks:
                sent += len(chunk)
                yield chunk
        meter.units.known = True
    finally:
        meter.units.audio_seconds_out = speech_seconds(body.response_format, sent, sample_rate, len(body.input),
                                                       body.speed)
