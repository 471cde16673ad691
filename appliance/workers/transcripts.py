"""Rendering a transcription in OpenAI's five response formats; pure functions, no engine."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from appliance.protocol.audio import Transcription, TranscriptionSegment, TranscriptionUsage, TranscriptionWord, \
    VerboseTranscription


@dataclass
class Result:
    """What the engine heard: the contract's segments, and every word with its time when they were asked for."""

    language: str  # the language's English name, as OpenAI answers
    duration: float
    segments: list[TranscriptionSegment]
    words: list[TranscriptionWord] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(segment.text for segment in self.segments).strip()


def _timestamp(seconds: float, decimal: str) -> str:
    millis = int(round(max(seconds, 0.0) * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{millis:03d}"


def _cues(result: Result) -> list[TranscriptionSegment]:
    # A cue with no text would leave a blank line where the text belongs, which ends the cue early.
    return [s for s in result.segments if s.text.strip()]


def to_srt(result: Result) -> str:
    blocks = [f"{index}\n{_timestamp(s.start, ',')} --> {_timestamp(s.end, ',')}\n{s.text.strip()}\n"
              for index, s in enumerate(_cues(result), start=1)]
    return "\n".join(blocks)


def to_vtt(result: Result) -> str:
    blocks = [f"{_timestamp(s.start, '.')} --> {_timestamp(s.end, '.')}\n{s.text.strip()}\n" for s in _cues(result)]
    return "WEBVTT\n\n" + "\n".join(blocks)


def _usage(result: Result) -> TranscriptionUsage:
    return TranscriptionUsage(seconds=math.ceil(result.duration))


def to_verbose(result: Result, granularities: list[str]) -> VerboseTranscription:
    return VerboseTranscription(
        language=result.language, duration=round(result.duration, 3), text=result.text,
        segments=result.segments if not granularities or "segment" in granularities else None,
        words=result.words if "word" in granularities else None, usage=_usage(result))


def render(result: Result, response_format: str, granularities: list[str]) -> tuple[str, str]:
    """The body and its Content-Type for ``response_format``."""
    if response_format == "text":
        return result.text + "\n", "text/plain; charset=utf-8"
    if response_format == "srt":
        return to_srt(result), "application/x-subrip; charset=utf-8"
    if response_format == "vtt":
        return to_vtt(result), "text/vtt; charset=utf-8"
    if response_format == "verbose_json":
        body: Transcription | VerboseTranscription = to_verbose(result, granularities)
    else:
        body = Transcription(text=result.text, usage=_usage(result))
    return body.model_dump_json(exclude_none=True), "application/json"
