"""Audio: POST /v1/inference/audio/transcribe and /synthesize, and OpenAI's /oai/v1/audio/*.

Transcripts come in the envelope (``data``), or as the raw file when the
client's Accept asks for it; synthesised speech is raw audio, streamed. The
services are serving/audio.py.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Response

from appliance.tenancy.caller import Caller
from appliance.gateway.auth import require
from appliance.gateway.body import parse_body
from appliance.gateway.calls import call_of, respond
from appliance.gateway.errors import ok, ok_raw
from appliance.gateway.openapi import INFERENCE, Envelope, documented, json_ok, json_request, multipart_request, \
    raw_ok
from appliance.gateway.routing import api_router
from appliance.gateway.uploads import read_upload
from appliance.protocol.audio import (SPEECH_MEDIA_TYPES, TRANSCRIPT_MEDIA_TYPES, SpeechRequest, Transcription,
                                      TranscriptionForm, VerboseTranscription)
from appliance.serving import audio
from appliance.serving.audio import Transcript, transcription_form

router = api_router(metered=True)

Key = Annotated[Caller, Depends(require("models:use"))]


async def _transcribe(request: Request, key: Caller, default_format: str) -> Transcript:
    upload = await read_upload(request, request.app.state.settings.max_upload_bytes)
    try:
        form = transcription_form(upload.fields(), default_format)
        return await audio.transcribe(call_of(request, key), form, upload.audio)
    finally:
        await upload.form.close()


def _raw_media_type(request: Request, transcript: Transcript) -> str | None:
    """The media type to answer a text transcript in, when the client's Accept asks for the raw file."""
    if not transcript.is_text:
        return None
    accept = request.headers.get("accept", "").lower()
    own = TRANSCRIPT_MEDIA_TYPES[transcript.response_format]
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
    transcript = await _transcribe(request, key, default_format="text")
    if not transcript.is_text:
        return ok_raw(transcript.content, request)
    raw = _raw_media_type(request, transcript)
    if raw is not None:
        return Response(transcript.content, media_type=f"{raw}; charset=utf-8")
    text = transcript.content.decode("utf-8")
    return ok({"text": text.rstrip("\n") if transcript.response_format == "text" else text}, request)


@router.post("/oai/v1/audio/transcriptions", **documented(
    body=TRANSCRIPTION_FORM, errors=INFERENCE, openai=True,
    ok=json_ok(VerboseTranscription | Transcription, "the transcript", RAW_TRANSCRIPTS)))
async def openai_transcriptions(request: Request, key: Key) -> Response:
    transcript = await _transcribe(request, key, default_format="json")
    return Response(transcript.content, media_type=transcript.media_type)


async def _speech(request: Request, key: Caller) -> Response:
    call = call_of(request, key)
    return respond(call, request, await audio.synthesize(call, await parse_body(request, SpeechRequest)))


@router.post("/v1/inference/audio/synthesize", response_class=Response, **documented(
    body=json_request(SpeechRequest), ok=SPEECH_OK, errors=INFERENCE))
async def synthesize(request: Request, key: Key) -> Response:
    return await _speech(request, key)


@router.post("/oai/v1/audio/speech", response_class=Response, **documented(
    body=json_request(SpeechRequest), ok=SPEECH_OK, errors=INFERENCE, openai=True))
async def openai_speech(request: Request, key: Key) -> Response:
    return await _speech(request, key)

