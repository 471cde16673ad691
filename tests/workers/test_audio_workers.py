"""The audio workers' parts in process: transcript rendering, voice names, streamed encoding, sentence streaming."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from appliance.protocol.audio import SpeechRequest, TranscriptionForm, TranscriptionSegment, TranscriptionWord
from appliance.workers.audio_encoding import FORMATS, StreamEncoder, wav_header
from appliance.workers.speech import VoiceChoice, synthesize_chunks, voice_table
from appliance.workers.transcripts import Result, render, to_srt, to_vtt
from appliance.workers.transcription import decode
from appliance.workers.server import WorkerError
from tests.support.audio import audio_file, decode as decode_audio, decode_pcm, tone


def _segment(index: int, start: float, end: float, text: str) -> TranscriptionSegment:
    return TranscriptionSegment(id=index, seek=0, start=start, end=end, text=text, tokens=[1, 2], temperature=0.0,
                                avg_logprob=-0.5, compression_ratio=1.2, no_speech_prob=0.01)


RESULT = Result(language="english", duration=3725.5, segments=[
    _segment(0, 0.0, 1.5, " Hello there."),
    _segment(1, 1.5, 1.6, "  "),  # no text: no cue
    _segment(2, 3661.25, 3725.5, " An hour later."),
], words=[TranscriptionWord(word=" Hello", start=0.0, end=0.7), TranscriptionWord(word=" there.", start=0.7, end=1.5)])


def test_srt_numbers_cues_and_uses_comma_millis() -> None:
    assert to_srt(RESULT) == ("1\n00:00:00,000 --> 00:00:01,500\nHello there.\n\n"
                              "2\n01:01:01,250 --> 01:02:05,500\nAn hour later.\n")


def test_vtt_has_its_header_and_dot_millis() -> None:
    assert to_vtt(RESULT) == ("WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nHello there.\n\n"
                              "01:01:01.250 --> 01:02:05.500\nAn hour later.\n")


def test_verbose_json_carries_segments_and_words_as_asked() -> None:
    body, media_type = render(RESULT, "verbose_json", ["word"])
    data = json.loads(body)
    assert media_type == "application/json"
    assert data["words"][0] == {"word": " Hello", "start": 0.0, "end": 0.7} and "segments" not in data
    data = json.loads(render(RESULT, "verbose_json", [])[0])
    assert len(data["segments"]) == 3 and "words" not in data
    assert data["text"] == "Hello there.   An hour later." and data["usage"] == {"type": "duration", "seconds": 3726}
    assert render(RESULT, "text", [])[0] == "Hello there.   An hour later.\n"
    assert json.loads(render(RESULT, "json", [])[0])["text"] == data["text"]


def test_the_form_treats_blank_fields_as_unset_and_checks_the_language_shape() -> None:
    form = TranscriptionForm.model_validate({"model": "m", "language": "", "prompt": " ", "response_format": "srt"})
    assert form.language is None and form.prompt is None
    assert TranscriptionForm.model_validate({"model": "m", "language": "EN"}).language == "en"
    with pytest.raises(ValueError):
        TranscriptionForm.model_validate({"model": "m", "language": "en-US"})


def test_decode_refuses_what_is_not_audio() -> None:
    assert decode(io.BytesIO(audio_file(1.0, "flac"))).shape == (16000,)
    for junk in (b"", b"not audio" * 100):
        with pytest.raises(WorkerError) as raised:
            decode(io.BytesIO(junk))
        assert raised.value.param == "file" and raised.value.status_code == 400


def test_voice_names_cover_openai_names_own_names_and_speakers() -> None:
    table = voice_table({"lessac": {}, "libri": {"p1": 0, "p2": 1}}, {"echo": "libri:p2", "nova": "libri:0"})
    assert table["lessac"] == VoiceChoice("lessac", None)
    assert table["libri:p2"] == table["p2"] == table["echo"] == VoiceChoice("libri", 1)
    assert table["nova"] == VoiceChoice("libri", 0)
    assert table["alloy"] == VoiceChoice("lessac", None)  # unmapped OpenAI names: the first voice
    with pytest.raises(RuntimeError, match="no voice 'nope'"):
        voice_table({"lessac": {}}, {"alloy": "nope"})
    with pytest.raises(RuntimeError, match="no speaker"):
        voice_table({"libri": {"p1": 0}}, {"alloy": "libri:p9"})


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_stream_encoder_makes_a_decodable_file_piece_by_piece(fmt: str) -> None:
    encoder = StreamEncoder(fmt, in_rate=22050, out_rate=24000)
    pieces = [encoder.add(tone(0.5, 22050, seed)) for seed in range(4)]
    pieces.append(encoder.finish())
    data = b"".join(pieces)
    assert sum(1 for piece in pieces[:-1] if piece) >= 2, "the format must be emitted as it is fed"
    audio = decode_pcm(data) if fmt == "pcm" else decode_audio(data)
    assert 2.0 - 0.01 <= audio.duration <= 2.0 + 0.15
    if fmt == "wav":
        assert data.startswith(wav_header(24000))


def test_speech_is_synthesised_lazily_sentence_by_sentence(tiny_catalogue: Path) -> None:
    from piper import PiperVoice

    voice = PiperVoice.load(tiny_catalogue.parent / "piper-tiny" / "tiny-en.onnx")
    calls = 0
    real_run = voice.session.run

    class CountingSession:  # counts the engine's calls; the engine itself runs for real
        def run(self, *args: object, **kwargs: object) -> object:
            nonlocal calls
            calls += 1
            return real_run(*args, **kwargs)

    voice.session = CountingSession()  # type: ignore[assignment]
    req = SpeechRequest(model="m", input="One sentence. Two sentences! Three?", voice="v", response_format="pcm")
    pieces = synthesize_chunks(voice, req, 0, 24000)
    first = next(pieces)
    assert first and calls == 1  # the first piece is out after the first sentence, before the others are made
    rest = list(pieces)
    assert calls == 3 and len([p for p in rest if p]) >= 2
    assert np.frombuffer(first + b"".join(rest), dtype="<i2").size > 0


@pytest.mark.parametrize("text", ["...!!!", "  .  ", "\u200b"])
def test_text_that_yields_no_audio_is_refused_before_any_byte(tiny_catalogue: Path, text: str) -> None:
    from piper import PiperVoice

    voice = PiperVoice.load(tiny_catalogue.parent / "piper-tiny" / "tiny-en.onnx")
    for fmt in ("mp3", "wav", "pcm"):
        req = SpeechRequest(model="m", input=text, voice="v", response_format=fmt)
        with pytest.raises(WorkerError) as raised:
            next(synthesize_chunks(voice, req, 0, 24000))
        assert raised.value.status_code == 400 and raised.value.param == "input"


def test_the_phonemisers_refusal_is_an_error_about_input(tiny_catalogue: Path) -> None:
    from piper import PiperVoice

    voice = PiperVoice.load(tiny_catalogue.parent / "piper-tiny" / "tiny-en.onnx")
    req = SpeechRequest.model_construct(model="m", input="a\u0000b", voice="v", response_format="pcm", speed=1.0)
    with pytest.raises(WorkerError) as raised:
        next(synthesize_chunks(voice, req, 0, 24000))
    assert raised.value.status_code == 400 and raised.value.param == "input"


@pytest.mark.parametrize("text", ["\u0000\u0000", "hi\u0007there", "\x1b[31mred"])
def test_speech_input_with_control_characters_is_refused_by_the_contract(text: str) -> None:
    with pytest.raises(ValueError, match="control character"):
        SpeechRequest(model="m", input=text, voice="v")
    assert SpeechRequest(model="m", input="line one\nline two\ttab", voice="v").input


def test_a_validators_sentence_reaches_the_client_without_pydantics_prefix() -> None:
    from pydantic import ValidationError

    from appliance.serving.errors import from_validation_error

    with pytest.raises(ValidationError) as raised:
        SpeechRequest(model="m", input="\u0000", voice="v")
    error = from_validation_error(raised.value)
    assert error.message == "input: the text holds the control character U+0000; remove it"
