"""Audio end to end: real gateway, real faster-whisper and Piper workers on tiny random-weight models."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from tests.conftest import catalogue_subset
from tests.support.appliance import RunningAppliance, start_appliance
from tests.support.audio import UPLOAD_FORMATS, Decoded, audio_file, decode, decode_pcm, encode, tone
from tests.support.processes import engine_process

WHISPER = "openai/whisper-1"
TTS = "openai/tts-1"
UPLOAD_LIMIT = 4 * 1024 * 1024  # the fixture's limit, small so that an oversize upload is cheap to send
SPEECH_RATES = {"mp3": 24000, "wav": 24000, "opus": 48000, "flac": 24000, "aac": 24000, "pcm": 24000}
MEDIA_TYPES = {"mp3": "audio/mpeg", "wav": "audio/wav", "opus": "audio/opus", "flac": "audio/flac",
               "aac": "audio/aac", "pcm": "audio/pcm"}
TEXT = "Hello world. This appliance speaks in sentences! Does it stream them one by one?"


@pytest.fixture(scope="module")
def audio_appliance(tiny_catalogue: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAppliance]:
    state = tmp_path_factory.mktemp("audio-state")
    catalogue = catalogue_subset(tiny_catalogue, [WHISPER, TTS], state / "models.toml")
    with start_appliance(catalogue, state, env={"APPLIANCE_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT)}) as running:
        yield running


@pytest.fixture(scope="module")
def key(audio_appliance: RunningAppliance) -> str:
    return audio_appliance.create_key()


@pytest.fixture(scope="module")
def client(audio_appliance: RunningAppliance, key: str) -> Iterator[httpx.Client]:
    with audio_appliance.client(key, timeout=120) as c:
        yield c


def speak(client: httpx.Client, **fields: object) -> httpx.Response:
    return client.post("/v1/inference/audio/synthesize", json={"model": TTS, "input": TEXT, "voice": "alloy",
                                                               **fields})


def transcribe(client: httpx.Client, data: bytes, filename: str = "clip.wav", headers: dict[str, str] | None = None,
               **fields: object) -> httpx.Response:
    return client.post("/v1/inference/audio/transcribe", data={"model": WHISPER, **fields},
                       files={"file": (filename, data, "application/octet-stream")}, headers=headers or {})


def assert_error(response: httpx.Response, status: int, code: str, field: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == "error" and body["error"]["code"] == code, body
    assert body["meta"]["request_id"] == response.headers["x-scaigrid-request-id"]
    if field is not None:
        assert field in [d["field"] for d in body["error"]["details"]], body
    return body["error"]


def decoded(response: httpx.Response, fmt: str) -> Decoded:
    return decode_pcm(response.content) if fmt == "pcm" else decode(response.content)


# --- speech -------------------------------------------------------------------------------------


def test_the_seed_synthesize_example_runs_verbatim(client: httpx.Client) -> None:
    response = client.post("/v1/inference/audio/synthesize", json={
        "model": "openai/tts-1",
        "input": "Hello world",
        "voice": "alloy",
        "response_format": "mp3",
        "speed": 1.0,
    })
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "audio/mpeg"
    assert response.headers["x-scaigrid-model"] == TTS and response.headers["x-scaigrid-backend"]
    assert response.headers["x-scaigrid-request-id"]
    audio = decode(response.content)
    assert audio.codec.startswith("mp3") and audio.rate == 24000 and audio.duration > 0.1


@pytest.fixture(scope="module")
def reference(client: httpx.Client) -> Decoded:
    """The raw PCM of TEXT: the length every encoded format must decode back to."""
    response = speak(client, response_format="pcm")
    assert response.status_code == 200, response.text
    return decode_pcm(response.content)


@pytest.mark.parametrize("fmt", ["mp3", "wav", "opus", "flac", "aac", "pcm"])
def test_every_speech_format_decodes_back_to_the_same_audio(client: httpx.Client, reference: Decoded,
                                                            fmt: str) -> None:
    response = speak(client, response_format=fmt)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == MEDIA_TYPES[fmt]
    audio = decoded(response, fmt)
    assert audio.rate == SPEECH_RATES[fmt]
    # Lossy codecs pad to whole frames (and add encoder delay): a few frames longer at most.
    assert reference.duration - 0.01 <= audio.duration <= reference.duration + 0.15, (fmt, audio, reference)


def test_speed_changes_the_duration(client: httpx.Client, reference: Decoded) -> None:
    durations = {}
    for speed in (0.5, 2.0, 4.0):
        response = speak(client, response_format="pcm", speed=speed)
        assert response.status_code == 200, response.text
        durations[speed] = decode_pcm(response.content).duration
    assert durations[0.5] == pytest.approx(reference.duration * 2, rel=0.05)
    assert durations[2.0] == pytest.approx(reference.duration / 2, rel=0.05)
    assert durations[4.0] == pytest.approx(reference.duration / 4, rel=0.05)


def test_speech_is_streamed_in_chunks_without_a_length(audio_appliance: RunningAppliance, key: str) -> None:
    with audio_appliance.client(key) as c, c.stream("POST", "/v1/inference/audio/synthesize", json={
            "model": TTS, "input": TEXT, "voice": "alloy", "response_format": "pcm"}) as response:
        assert response.status_code == 200
        assert response.headers.get("transfer-encoding") == "chunked"
        assert "content-length" not in response.headers
        assert sum(len(chunk) for chunk in response.iter_raw()) > 0


def test_voices_map_openai_names_and_the_voices_own_names(client: httpx.Client) -> None:
    def pcm(voice: str) -> bytes:
        response = speak(client, response_format="pcm", voice=voice, input="Hello world")
        assert response.status_code == 200, (voice, response.text)
        return response.content

    by_name = {voice: pcm(voice) for voice in ("alloy", "echo", "fable", "onyx", "nova", "shimmer",
                                               "tiny-en", "tiny-en:ada", "tiny-en:bo", "bo")}
    assert by_name["alloy"] == by_name["tiny-en:ada"] == by_name["fable"] == by_name["nova"]
    assert by_name["echo"] == by_name["tiny-en:bo"] == by_name["bo"] == by_name["onyx"] == by_name["shimmer"]
    assert by_name["alloy"] != by_name["echo"]  # two speakers, two sounds


@pytest.mark.parametrize(("change", "field"), [
    ({"voice": "nobody"}, "voice"),
    ({"voice": None}, "voice"),
    ({"input": ""}, "input"),
    ({"input": "   "}, "input"),
    ({"input": "a" * 4097}, "input"),
    ({"speed": 0.1}, "speed"),
    ({"speed": 4.5}, "speed"),
    ({"response_format": "ogg"}, "response_format"),
    ({"model": WHISPER}, "model"),
])
def test_bad_speech_requests_are_validation_errors_naming_the_field(client: httpx.Client, change: dict,
                                                                    field: str) -> None:
    body = {"model": TTS, "input": "Hello world", "voice": "alloy", **change}
    body = {k: v for k, v in body.items() if v is not None}
    error = assert_error(client.post("/v1/inference/audio/synthesize", json=body), 422, "VALIDATION_ERROR", field)
    assert field in error["message"]


@pytest.mark.parametrize("text", ["...!!!", "\u0000\u0000", "  .  ?", "hello\u0007"])
@pytest.mark.parametrize("fmt", ["mp3", "pcm"])
def test_text_without_speech_is_a_validation_error_naming_input(client: httpx.Client, text: str, fmt: str) -> None:
    error = assert_error(speak(client, input=text, response_format=fmt), 422, "VALIDATION_ERROR", "input")
    assert "input" in error["message"]


def test_text_without_speech_is_a_validation_error_on_the_openai_surface(client: httpx.Client) -> None:
    for text in ("...!!!", "\u0000\u0000"):
        response = client.post("/oai/v1/audio/speech", json={"model": TTS, "input": text, "voice": "alloy"})
        assert response.status_code == 400, response.text  # OpenAI's status for a bad request
        error = response.json()["error"]
        assert error["param"] == "input" and error["type"] == "invalid_request_error", error


def test_an_unknown_speech_model_is_model_not_found(client: httpx.Client) -> None:
    assert_error(speak(client, model="openai/tts-9"), 404, "MODEL_NOT_FOUND")


# --- transcription ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(UPLOAD_FORMATS))
def test_every_upload_format_is_decoded_and_transcribed(client: httpx.Client, kind: str) -> None:
    response = transcribe(client, audio_file(2.0, kind), filename=f"clip.{kind}", response_format="verbose_json")
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["duration"] == pytest.approx(2.0, abs=0.15)  # AAC in M4A decodes with its 1024-sample priming
    assert data["language"] == "english" and data["task"] == "transcribe"


@pytest.fixture(scope="module")
def clip_mp3() -> bytes:
    return audio_file(4.0, "mp3", seed=1)


def test_text_is_the_default_format_and_comes_in_the_envelope(client: httpx.Client, clip_mp3: bytes) -> None:
    response = transcribe(client, clip_mp3, filename="clip.mp3")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok" and isinstance(body["data"]["text"], str)
    assert set(body["data"]) == {"text"}
    raw = transcribe(client, clip_mp3, filename="clip.mp3", headers={"Accept": "text/plain"})
    assert raw.headers["content-type"].startswith("text/plain")
    assert raw.text.rstrip("\n") == body["data"]["text"]


def test_json_has_text_and_usage(client: httpx.Client, clip_mp3: bytes) -> None:
    data = transcribe(client, clip_mp3, filename="clip.mp3", response_format="json").json()["data"]
    assert isinstance(data["text"], str) and data["usage"] == {"type": "duration", "seconds": 4}


def test_verbose_json_has_segments_and_words(client: httpx.Client, clip_mp3: bytes) -> None:
    response = client.post("/v1/inference/audio/transcribe", files={"file": ("clip.mp3", clip_mp3, "audio/mpeg")},
                           data={"model": WHISPER, "response_format": "verbose_json",
                                 "timestamp_granularities[]": ["segment", "word"]})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["duration"] == pytest.approx(4.0, abs=0.1)
    assert data["segments"] and data["words"]
    for segment in data["segments"]:
        assert 0 <= segment["start"] <= segment["end"] <= data["duration"]
        assert {"id", "seek", "text", "tokens", "avg_logprob", "no_speech_prob"} <= set(segment)
    for word in data["words"]:
        assert set(word) == {"word", "start", "end"} and 0 <= word["start"] <= word["end"] <= data["duration"]
    assert data["text"] == "".join(s["text"] for s in data["segments"]).strip()

    only_segments = transcribe(client, clip_mp3, filename="clip.mp3", response_format="verbose_json").json()["data"]
    assert only_segments["segments"] and "words" not in only_segments


SRT_CUE = re.compile(r"^(\d+)\n(\d\d:\d\d:\d\d,\d\d\d) --> (\d\d:\d\d:\d\d,\d\d\d)\n(.+)$")
VTT_CUE = re.compile(r"^(\d\d:\d\d:\d\d\.\d\d\d) --> (\d\d:\d\d:\d\d\.\d\d\d)\n(.+)$")


def _seconds(stamp: str) -> float:
    hours, minutes, rest = stamp.replace(",", ".").split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(rest)


def test_srt_is_well_formed(client: httpx.Client, clip_mp3: bytes) -> None:
    enveloped = transcribe(client, clip_mp3, filename="clip.mp3", response_format="srt").json()["data"]["text"]
    raw = transcribe(client, clip_mp3, filename="clip.mp3", response_format="srt",
                     headers={"Accept": "application/x-subrip"})
    assert raw.headers["content-type"].startswith("application/x-subrip")
    assert raw.text == enveloped
    cues = enveloped.strip("\n").split("\n\n")
    assert cues
    for number, cue in enumerate(cues, start=1):
        match = SRT_CUE.match(cue)
        assert match, repr(cue)
        assert int(match[1]) == number and _seconds(match[2]) <= _seconds(match[3]) <= 4.0


def test_vtt_is_well_formed(client: httpx.Client, clip_mp3: bytes) -> None:
    raw = transcribe(client, clip_mp3, filename="clip.mp3", response_format="vtt", headers={"Accept": "text/vtt"})
    assert raw.status_code == 200 and raw.headers["content-type"].startswith("text/vtt")
    assert raw.text.startswith("WEBVTT\n\n")
    cues = raw.text[len("WEBVTT\n\n"):].strip("\n").split("\n\n")
    assert cues
    for cue in cues:
        match = VTT_CUE.match(cue)
        assert match, repr(cue)
        assert _seconds(match[1]) <= _seconds(match[2]) <= 4.0
    enveloped = transcribe(client, clip_mp3, filename="clip.mp3", response_format="vtt").json()["data"]["text"]
    assert enveloped == raw.text


def test_a_long_file_is_transcribed_whole(client: httpx.Client) -> None:
    long_wav = audio_file(95.0, "wav", seed=2)
    response = transcribe(client, long_wav, response_format="verbose_json")
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["duration"] == pytest.approx(95.0, abs=0.01)
    # faster-whisper walked every 30-second window: segments come from past the first ones.
    assert max(s["seek"] for s in data["segments"]) >= 6000  # seek counts 10 ms frames: window three or later


def test_synthesised_speech_transcribes_back(client: httpx.Client) -> None:
    speech = speak(client, response_format="wav")
    assert speech.status_code == 200
    spoken = decode(speech.content)
    response = transcribe(client, speech.content, filename="speech.wav", response_format="verbose_json")
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["duration"] == pytest.approx(spoken.duration, abs=0.05)
    assert isinstance(data["text"], str)


def _video_without_audio() -> bytes:
    import io

    import av

    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for _ in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


@pytest.mark.parametrize(("data", "fields", "field"), [
    (b"this is not audio at all, just text " * 50, {}, "file"),
    (bytes(range(256)) * 40, {}, "file"),
    (b"", {}, "file"),
    ("video", {}, "file"),
    (None, {"language": "xx"}, "language"),
    (None, {"language": "english"}, "language"),
    (None, {"language": "fr"}, "language"),  # a real code, but the tiny model is English-only
    (None, {"response_format": "docx"}, "response_format"),
    (None, {"temperature": "1.5"}, "temperature"),
    (None, {"timestamp_granularities[]": "letter"}, "timestamp_granularities[0]"),
    (None, {"model": TTS}, "model"),
])
def test_bad_uploads_are_validation_errors_naming_the_field(client: httpx.Client, clip_mp3: bytes,
                                                             data: bytes | str | None, fields: dict,
                                                             field: str) -> None:
    content = clip_mp3 if data is None else _video_without_audio() if data == "video" else data
    error = assert_error(transcribe(client, content, filename="upload.mp3", **fields), 422, "VALIDATION_ERROR", field)
    assert field.split("[")[0] in error["message"]


def test_a_request_without_a_file_or_not_multipart_is_a_validation_error(client: httpx.Client) -> None:
    no_file = client.post("/v1/inference/audio/transcribe", data={"model": WHISPER},
                          headers={"Content-Type": "multipart/form-data; boundary=x"}, content=b"--x--\r\n")
    assert_error(no_file, 422, "VALIDATION_ERROR", "file")
    no_boundary = client.post("/v1/inference/audio/transcribe", content=b"--x\r\n",
                              headers={"Content-Type": "multipart/form-data"})
    assert_error(no_boundary, 422, "VALIDATION_ERROR", "body")
    truncated = client.post("/v1/inference/audio/transcribe", content=b'--x\r\nContent-Disposition: form-data; '
                            b'name="file"; filename="a.wav"\r\n\r\nRIFF',
                            headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert truncated.status_code == 422, truncated.text
    as_json = client.post("/v1/inference/audio/transcribe", json={"model": WHISPER, "file": "abc"})
    assert_error(as_json, 422, "VALIDATION_ERROR", "body")
    no_model = client.post("/v1/inference/audio/transcribe", files={"file": ("a.wav", audio_file(1.0), "audio/wav")})
    assert_error(no_model, 422, "VALIDATION_ERROR", "model")


def test_an_upload_over_the_limit_is_payload_too_large(client: httpx.Client) -> None:
    big = tone(UPLOAD_LIMIT / 2 / 16000 + 5)  # a valid WAV, just too long
    oversized = encode(big, 16000, "wav")
    assert len(oversized) > UPLOAD_LIMIT
    error = assert_error(transcribe(client, oversized), 413, "PAYLOAD_TOO_LARGE")
    assert "limit" in error["message"]

    boundary = "limit-test"

    def chunked() -> Iterator[bytes]:  # no Content-Length: the gateway must count while it streams
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n{WHISPER}\r\n"
               f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
               "Content-Type: audio/wav\r\n\r\n").encode()
        for start in range(0, len(oversized), 256 * 1024):
            yield oversized[start:start + 256 * 1024]
        yield f"\r\n--{boundary}--\r\n".encode()

    response = client.post("/v1/inference/audio/transcribe", content=chunked(),
                           headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")


# --- OpenAI surface ---------------------------------------------------------------------------


def test_the_openai_sdk_transcribes_and_speaks(audio_appliance: RunningAppliance, key: str,
                                               clip_mp3: bytes) -> None:
    sdk = openai.OpenAI(base_url=f"{audio_appliance.url}/oai/v1", api_key=key, max_retries=0)
    plain = sdk.audio.transcriptions.create(model="whisper-1", file=("clip.mp3", clip_mp3))  # OpenAI's own name
    assert isinstance(plain.text, str)
    verbose = sdk.audio.transcriptions.create(model=WHISPER, file=("clip.mp3", clip_mp3),
                                              response_format="verbose_json",
                                              timestamp_granularities=["word", "segment"])
    assert verbose.duration == pytest.approx(4.0, abs=0.1) and verbose.segments and verbose.words
    srt = sdk.audio.transcriptions.create(model=WHISPER, file=("clip.mp3", clip_mp3), response_format="srt")
    assert SRT_CUE.match(str(srt).strip("\n").split("\n\n")[0])

    speech = sdk.audio.speech.create(model="tts-1", voice="nova", input="Hello world", response_format="flac")
    assert decode(speech.content).rate == 24000
    with sdk.audio.speech.with_streaming_response.create(model=TTS, voice="echo", input=TEXT) as streamed:
        assert decode(b"".join(streamed.iter_bytes())).duration > 0
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.audio.speech.create(model=TTS, voice="nobody", input="Hello")
    assert raised.value.body["param"] == "voice"  # type: ignore[index]


# --- a worker crash ---------------------------------------------------------------------------


def worker_pid(appliance: RunningAppliance, module: str) -> int:
    return engine_process(appliance.process.pid, module).pid


def test_a_worker_crash_is_a_backend_error_then_it_recovers(audio_appliance: RunningAppliance,
                                                            client: httpx.Client) -> None:
    pid = worker_pid(audio_appliance, "appliance.workers.transcription")
    clip = audio_file(1.0)
    # Freeze the worker so that the request is surely inside it when it dies.
    os.kill(pid, signal.SIGSTOP)
    result: dict[str, httpx.Response] = {}
    thread = threading.Thread(target=lambda: result.update(r=transcribe(client, clip, response_format="json")))
    thread.start()
    time.sleep(1.5)
    os.kill(pid, signal.SIGKILL)
    thread.join(60)
    error = assert_error(result["r"], 502, "BACKEND_ERROR")
    assert WHISPER in error["message"]

    deadline = time.monotonic() + 60
    while True:  # the supervisor restarts it; meanwhile the answer is MODEL_UNAVAILABLE with retry_after
        response = transcribe(client, clip, response_format="json")
        if response.status_code == 200:
            break
        assert_error(response, 503, "MODEL_UNAVAILABLE")
        assert int(response.headers["retry-after"]) >= 1
        assert time.monotonic() < deadline, "the worker did not come back"
        time.sleep(0.5)
    assert worker_pid(audio_appliance, "appliance.workers.transcription") != pid
    assert speak(client, response_format="wav").status_code == 200  # the other model never noticed
