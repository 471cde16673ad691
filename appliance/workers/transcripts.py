"""Rendering a transcription in OpenAI's five response formats; pure functions, no engine."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Word:
    word: str
    start: float
    end: float


@dataclass
class Segment:
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
    words: list[Word] = field(default_factory=list)


@dataclass
class Result:
    language: str  # the language's English name, as OpenAI answers
    duration: float
    segments: list[Segment]

    @property
    def text(self) -> str:
        return "".join(segment.text for segment in self.segments).strip()


def _timestamp(seconds: float, decimal: str) -> str:
    millis = int(round(max(seconds, 0.0) * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{millis:03d}"


def _cues(result: Result) -> list[Segment]:
    # A cue with no text would leave a blank line where the text belongs, which ends the cue early.
    return [s for s in result.segments if s.text.strip()]


def to_srt(result: Result) -> str:
    blocks = [f"{index}\n{_timestamp(s.start, ',')} --> {_timestamp(s.end, ',')}\n{s.text.strip()}\n"
              for index, s in enumerate(_cues(result), start=1)]
    return "\n".join(blocks)


def to_vtt(result: Result) -> str:
    blocks = [f"{_timestamp(s.start, '.')} --> {_timestamp(s.end, '.')}\n{s.text.strip()}\n" for s in _cues(result)]
    return "WEBVTT\n\n" + "\n".join(blocks)


def _usage(result: Result) -> dict[str, Any]:
    return {"type": "duration", "seconds": math.ceil(result.duration)}


def to_verbose(result: Result, granularities: list[str]) -> dict[str, Any]:
    body: dict[str, Any] = {"task": "transcribe", "language": result.language, "duration": round(result.duration, 3),
                            "text": result.text}
    if not granularities or "segment" in granularities:
        body["segments"] = [{
            "id": s.id, "seek": s.seek, "start": s.start, "end": s.end, "text": s.text, "tokens": s.tokens,
            "temperature": s.temperature, "avg_logprob": s.avg_logprob, "compression_ratio": s.compression_ratio,
            "no_speech_prob": s.no_speech_prob,
        } for s in result.segments]
    if "word" in granularities:
        body["words"] = [{"word": w.word, "start": w.start, "end": w.end} for s in result.segments for w in s.words]
    body["usage"] = _usage(result)
    return body


def render(result: Result, response_format: str, granularities: list[str]) -> tuple[str, str]:
    """The body and its Content-Type for ``response_format``."""
    if response_format == "text":
        return result.text + "\n", "text/plain; charset=utf-8"
    if response_format == "srt":
        return to_srt(result), "application/x-subrip; charset=utf-8"
    if response_format == "vtt":
        return to_vtt(result), "text/vtt; charset=utf-8"
    if response_format == "verbose_json":
        body = to_verbose(result, granularities)
    else:
        body = {"text": result.text, "usage": _usage(result)}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")), "application/json"
