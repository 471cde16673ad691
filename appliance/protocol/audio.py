"""POST /v1/inference/audio/transcribe and /synthesize, and OpenAI's /audio/transcriptions and /audio/speech."""

from __future__ import annotations

import unicodedata
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

TranscriptionFormat = Literal["text", "json", "verbose_json", "srt", "vtt"]
SpeechFormat = Literal["mp3", "wav", "opus", "flac", "aac", "pcm"]
Granularity = Literal["segment", "word"]

MAX_SPEECH_INPUT = 4096  # OpenAI's limit of characters per speech request
AUDIO_DURATION_HEADER = "x-audio-duration"  # seconds of audio a transcription worker heard
# A form field only the gateway sends: the most seconds the key's budget has room for; longer audio is refused.
MAX_AUDIO_SECONDS_FIELD = "max_audio_seconds"
SPEECH_SAMPLE_RATE = 24000  # what OpenAI's voices deliver; clients playing raw pcm assume it


def speech_sample_rate(engine_options: dict[str, object]) -> int:
    """The rate a speech model's audio is sent at (``engine_options.sample_rate``)."""
    return int(engine_options.get("sample_rate", SPEECH_SAMPLE_RATE))  # type: ignore[call-overload]

# The Content-Type of each synthesised format (what OpenAI answers).
SPEECH_MEDIA_TYPES: dict[str, str] = {
    "mp3": "audio/mpeg", "wav": "audio/wav", "opus": "audio/opus",
    "flac": "audio/flac", "aac": "audio/aac", "pcm": "audio/pcm",
}

# The Content-Type of each transcription format as a raw file.
TRANSCRIPT_MEDIA_TYPES: dict[str, str] = {
    "text": "text/plain", "srt": "application/x-subrip", "vtt": "text/vtt",
    "json": "application/json", "verbose_json": "application/json",
}


def _blank_to_none(value: object) -> object:
    # Form clients send an empty string for a field they leave unset.
    return None if isinstance(value, str) and not value.strip() else value


FormText = Annotated[str | None, BeforeValidator(_blank_to_none)]


class TranscriptionForm(BaseModel):
    """The form fields of a transcription request besides ``file`` (multipart/form-data)."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    language: FormText = Field(None, description="ISO-639-1 code; unset = detect")
    temperature: float | None = Field(None, ge=0.0, le=1.0)
    prompt: FormText = None
    response_format: TranscriptionFormat = "json"
    timestamp_granularities: list[Granularity] = Field(default_factory=list)

    @field_validator("language")
    @classmethod
    def _language_shape(cls, value: str | None) -> str | None:
        if value is None:
            return None
        code = value.strip().lower()
        if not code.isalpha() or not 2 <= len(code) <= 3:
            raise ValueError(f"'{value}' is not a language code; use ISO-639-1, such as 'en' or 'de'")
        return code


class TranscriptionWord(BaseModel):
    word: str
    start: float
    end: float


class TranscriptionSegment(BaseModel):
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


class TranscriptionUsage(BaseModel):
    type: Literal["duration"] = "duration"
    seconds: int


class Transcription(BaseModel):
    """``response_format=json``."""

    text: str
    usage: TranscriptionUsage | None = None


class VerboseTranscription(BaseModel):
    """``response_format=verbose_json``: segments and, when asked for, words."""

    task: Literal["transcribe"] = "transcribe"
    language: str
    duration: float
    text: str
    segments: list[TranscriptionSegment] | None = None
    words: list[TranscriptionWord] | None = None
    usage: TranscriptionUsage | None = None


class SpeechRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    input: str = Field(min_length=1, max_length=MAX_SPEECH_INPUT)
    voice: str = Field(min_length=1)
    response_format: SpeechFormat = "mp3"
    speed: float = Field(1.0, ge=0.25, le=4.0)
    instructions: str | None = None  # OpenAI's gpt-4o-mini-tts steering; Piper voices cannot follow it

    @field_validator("input")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the text to speak is empty")
        control = next((c for c in value if unicodedata.category(c) == "Cc" and c not in "\t\n\r"), None)
        if control is not None:  # NUL and friends: the phonemiser refuses them, a person never means them
            raise ValueError(f"the text holds the control character U+{ord(control):04X}; remove it")
        return value
