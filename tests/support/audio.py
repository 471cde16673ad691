"""Test audio made in code with PyAV and numpy (no files downloaded), and decoding answers back."""

from __future__ import annotations

import io
from dataclasses import dataclass

import av
import numpy as np

# container format and codec for each file type a client may upload
UPLOAD_FORMATS: dict[str, tuple[str, str]] = {
    "wav": ("wav", "pcm_s16le"),
    "mp3": ("mp3", "libmp3lame"),
    "ogg": ("ogg", "libopus"),  # this PyAV build has no Vorbis encoder; Ogg Opus is the common Ogg today
    "webm": ("webm", "libopus"),
    "m4a": ("ipod", "aac"),
    "flac": ("flac", "flac"),
}


def tone(seconds: float, rate: int = 16000, seed: int = 0) -> np.ndarray:
    """Mono int16 samples: a wobbling tone with a little noise, roughly speech-like in level."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * (220 + 40 * np.sin(2 * np.pi * 3 * t)) * t) + 0.05 * rng.normal(size=t.size)
    return (np.clip(wave, -1, 1) * 32767).astype(np.int16)


def encode(samples: np.ndarray, rate: int, kind: str) -> bytes:
    """``samples`` (mono int16) as a file of ``kind`` (wav, mp3, ogg, webm, m4a, flac)."""
    muxer, codec = UPLOAD_FORMATS[kind]
    out = io.BytesIO()
    with av.open(out, mode="w", format=muxer) as container:
        stream = container.add_stream(codec, rate=48000 if codec == "libopus" else rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples[np.newaxis, :], format="s16", layout="mono")
        frame.sample_rate = rate
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout="mono",
                                      rate=stream.codec_context.sample_rate)
        for resampled in resampler.resample(frame) + resampler.resample(None):
            for packet in stream.encode(resampled):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


def audio_file(seconds: float, kind: str = "wav", rate: int = 16000, seed: int = 0) -> bytes:
    return encode(tone(seconds, rate, seed), rate, kind)


@dataclass
class Decoded:
    samples: int
    rate: int
    codec: str

    @property
    def duration(self) -> float:
        return self.samples / self.rate


def decode(data: bytes) -> Decoded:
    """Decode every audio frame PyAV finds (the duration comes from the samples, not the header)."""
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        return Decoded(samples, stream.codec_context.sample_rate, stream.codec_context.name)


def decode_pcm(data: bytes, rate: int = 24000) -> Decoded:
    assert len(data) % 2 == 0
    return Decoded(len(data) // 2, rate, "pcm_s16le")
