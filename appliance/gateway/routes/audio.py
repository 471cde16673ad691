"""Audio: POST /v1/inference/audio/transcribe and /synthesize, and OpenAI's /oai/v1/audio/*.

Transcripts come in the envelope (``data``), or as the raw file when the
client's Accept asks for it; synthesised speech is raw audio, streamed.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import ValidationError

from appliance.db.keys import ApiKey
from appliance.gateway.auth import require
from appliance.gateway.body import parse_body
from appliance.gateway.errors import from_validation_error, ok, ok_raw
from appliance.gateway.relay import RelayResponse, open_stream, resolve_model
from appliance.gateway.uploads import forward_upload, read_upload
from appliance.protocol.audio import SPEECH_MEDIA_TYPES, TRANSCRIPT_MEDIA_TYPES, SpeechRequest, TranscriptionForm

router = APIRouter()

Key = Annotated[ApiKey, Depends(require("models:use"))]

TEXT_FORMATS = ("text", "srt", "vtt")


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
        fields = _worker_fields(form, entry.served_model)
        answer = await forward_upload(request, entry, "/audio/transcriptions", upload, fields,
                                      json_answer=form.response_format not in TEXT_FORMATS)
        return answer.body, answer.content_type or TRANSCRIPT_MEDIA_TYPES[form.response_format], form
    finally:
        await upload.form.close()


def _raw_media_type(request: Request, response_format: str) -> str | None:
    """The media type to answer a text transcript in, when the client's Accept asks for the raw file."""
    if response_format not in TEXT_FORMATS:
        return None
    accept = request.headers.get("accept", "").lower()
    own = TRANSCRIPT_MEDIA_TYPES[response_format]
    if own in accept:
        return own
    return "text/plain" if "text/plain" in accept else None


@router.post("/v1/inference/audio/transcribe")
async def transcribe(request: Request, key: Key) -> Response:
    content, _media_type, form = await _transcribe(request, key, default_format="text")
    if form.response_format not in TEXT_FORMATS:
        return ok_raw(content, request)
    raw = _raw_media_type(request, form.response_format)
    if raw is not None:
        return Response(content, media_type=f"{raw}; charset=utf-8")
    text = content.decode("utf-8")
    return ok({"text": text.rstrip("\n") if form.response_format == "text" else text}, request)


@router.post("/oai/v1/audio/transcriptions")
async def openai_transcriptions(request: Request, key: Key) -> Response:
    content, media_type, _form = await _transcribe(request, key, default_format="json")
    return Response(content, media_type=media_type)


async def _speech(request: Request, key: ApiKey) -> Response:
    body = await parse_body(request, SpeechRequest)
    entry = resolve_model(request, key, body.model, "speech")
    payload = body.model_copy(update={"model": entry.served_model}).model_dump_json(exclude_none=True)
    chunks, _media_type = await open_stream(request, entry, "/audio/speech", payload.encode())
    return RelayResponse(chunks, media_type=SPEECH_MEDIA_TYPES[body.response_format])


@router.post("/v1/inference/audio/synthesize")
async def synthesize(request: Request, key: Key) -> Response:
    return await _speech(request, key)


@router.post("/oai/v1/audio/speech")
async def openai_speech(request: Request, key: Key) -> Response:
    return await _speech(request, key)
