"""Audio: POST /v1/inference/audio/transcribe and /synthesize, and OpenAI's /oai/v1/audio/*.

Transcripts come in the envelope (``data``), or as the raw file when the
client's Accept asks for it; synthesised speech is raw audio, streamed.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request, Response
from pydantic import ValidationError

from appliance.accounting.units import SPEECH_CHARS_PER_SECOND, speech_seconds
from appliance.db.keys import ApiKey
from appliance.gateway.routing import api_router
from appliance.gateway.auth import require
from appliance.gateway.body import parse_body
from appliance.gateway.errors import ApiError, from_validation_error, ok, ok_raw
from appliance.gateway.metering import Meter, over_room, reserve
from appliance.gateway.openapi import INFERENCE, Envelope, documented, json_ok, json_request, multipart_request, \
    raw_ok
from appliance.gateway.relay import RelayResponse, open_stream, resolve_model
from appliance.gateway.uploads import forward_upload, read_upload
from appliance.protocol.audio import (AUDIO_DURATION_HEADER, MAX_AUDIO_SECONDS_FIELD, SPEECH_MEDIA_TYPES,
                                      TRANSCRIPT_MEDIA_TYPES, SpeechRequest, Transcription, TranscriptionForm,
                                      VerboseTranscription, speech_sample_rate)

router = api_router()

Key = Annotated[ApiKey, Depends(require("models:use"))]

TEXT_FORMATS = ("text", "srt", "vtt")
# The audio's length is known only once the worker decoded it: a transcription reserves this much (a key with
# less left is refused at once), the worker refuses audio longer than the budget had room for, and the request
# is charged the real length after.
TRANSCRIPTION_RESERVE_S = 1.0


def _form(fields: dict[str, str | list[str]], default_format: str) -> TranscriptionForm:
    values: dict[str, object] = dict(fields)
    granularities = values.pop("timestamp_granularities[]", None) or values.pop("timestamp_granularities", None)
    values["timestamp_granularities"] = [granularities] if isinstance(granularities, str) else granularities or []
    if not values.get("response_format"):
        values["response_format"] = default_format
    try:
        return TranscriptionForm.model_validate(values)
    except ValidationError as exc:
        raise from_validation_error(exc) from None


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


async def _transcribe(request: Request, key: ApiKey, default_format: str) -> tuple[bytes, str, TranscriptionForm]:
    upload = await read_upload(request, request.app.state.settings.max_upload_bytes)
    try:
        form = _form(upload.fields(), default_format)
        entry = resolve_model(request, key, form.model, "transcription")
        meter = await reserve(request, key, "audio_seconds", TRANSCRIPTION_RESERVE_S)
        fields = _worker_fields(form, entry.served_model)
        if meter.reservation is not None:  # the worker refuses audio longer than the budget has room for
            fields[MAX_AUDIO_SECONDS_FIELD] = f"{meter.reservation.room:.3f}"
        try:
            answer = await forward_upload(request, entry, "/audio/transcriptions", upload, fields,
                                          json_answer=form.response_format not in TEXT_FORMATS)
        except ApiError as exc:
            if exc.details and exc.details[0]["field"] == MAX_AUDIO_SECONDS_FIELD:
                raise over_room(key, meter, _seconds_in(exc.message)) from None
            raise
        meter.units.audio_seconds_in = float(answer.headers.get(AUDIO_DURATION_HEADER) or 0.0)
        meter.units.known = True
        return answer.body, answer.content_type or TRANSCRIPT_MEDIA_TYPES[form.response_format], form
    finally:
        await upload.form.close()


def _seconds_in(message: str) -> float:
    """The audio's length in the worker's refusal ("the audio is 2.000 s long; …")."""
    words = message.split("the audio is ", 1)[-1].split()
    return float(words[0]) if words and words[0].replace(".", "", 1).isdigit() else 0.0


def _raw_media_type(request: Request, response_format: str) -> str | None:
    """The media type to answer a text transcript in, when the client's Accept asks for the raw file."""
    if response_format not in TEXT_FORMATS:
        return None
    accept = request.headers.get("accept", "").lower()
    own = TRANSCRIPT_MEDIA_TYPES[response_format]
    if own in accept:
        return own
    return "text/plain" if "text/plain" in accept else None


# The raw files a text transcript may come as (text, srt, vtt), beside its JSON.
RAW_TRANSCRIPTS = {media_type: {"schema": {"type": "string"}} for media_type in ("text/plain", "text/vtt",
                                                                                 "application/x-subrip")}
TRANSCRIPTION_FORM = multipart_request(TranscriptionForm, files=["file"])
SPEECH_OK = raw_ok(SPEECH_MEDIA_TYPES.values(), "the audio, streamed, in the Content-Type of response_format")


@router.post("/v1/inference/audio/transcribe", **documented(
    body=TRANSCRIPTION_FORM, errors=INFERENCE,
    ok=json_ok(Envelope[VerboseTranscription | Transcription], "the transcript", RAW_TRANSCRIPTS)))
async def transcribe(request: Request, key: Key) -> Response:
    content, _media_type, form = await _transcribe(request, key, default_format="text")
    if form.response_format not in TEXT_FORMATS:
        return ok_raw(content, request)
    raw = _raw_media_type(request, form.response_format)
    if raw is not None:
        return Response(content, media_type=f"{raw}; charset=utf-8")
    text = content.decode("utf-8")
    return ok({"text": text.rstrip("\n") if form.response_format == "text" else text}, request)


@router.post("/oai/v1/audio/transcriptions", **documented(
    body=TRANSCRIPTION_FORM, errors=INFERENCE, openai=True,
    ok=json_ok(VerboseTranscription | Transcription, "the transcript", RAW_TRANSCRIPTS)))
async def openai_transcriptions(request: Request, key: Key) -> Response:
    content, media_type, _form = await _transcribe(request, key, default_format="json")
    return Response(content, media_type=media_type)


async def _speech(request: Request, key: ApiKey) -> Response:
    body = await parse_body(request, SpeechRequest)
    entry = resolve_model(request, key, body.model, "speech")
    meter = await reserve(request, key, "audio_seconds", len(body.input) / SPEECH_CHARS_PER_SECOND / body.speed)
    payload = body.model_copy(update={"model": entry.served_model}).model_dump_json(exclude_none=True)
    chunks, _media_type = await open_stream(request, entry, "/audio/speech", payload.encode())
    counted = _counting(chunks, meter, body, speech_sample_rate(entry.engine_options))
    return RelayResponse(counted, media_type=SPEECH_MEDIA_TYPES[body.response_format])


async def _counting(chunks: AsyncIterator[bytes], meter: Meter, body: SpeechRequest,
                    sample_rate: int) -> AsyncIterator[bytes]:
    """The speech bytes, counted into the request's meter as they go (its seconds out, when they end)."""
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


@router.post("/v1/inference/audio/synthesize", response_class=Response, **documented(
    body=json_request(SpeechRequest), ok=SPEECH_OK, errors=INFERENCE))
async def synthesize(request: Request, key: Key) -> Response:
    return await _speech(request, key)


@router.post("/oai/v1/audio/speech", response_class=Response, **documented(
    body=json_request(SpeechRequest), ok=SPEECH_OK, errors=INFERENCE, openai=True))
async def openai_speech(request: Request, key: Key) -> Response:
    return await _speech(request, key)
