"""Incremental audio encoding with PyAV: feed PCM as it is synthesised, take the bytes ready so far.

Every format is written to a non-seekable sink so that it can be streamed:
containers that would go back to patch a header (MP3's Xing frame, FLAC's
STREAMINFO) simply leave it as first written, and WAV says "length unknown"
(0xFFFFFFFF) as OpenAI's streamed WAV does.
"""

from __future__ import annotations

import struct
from typing import Any

import av
import numpy as np

# format → (PyAV muxer, encoder, muxer options)
CONTAINERS: dict[str, tuple[str, str, dict[str, str]]] = {
    "mp3": ("mp3", "libmp3lame", {}),
    "opus": ("ogg", "libopus", {"page_duration": "20000"}),  # flush an Ogg page every 20 ms, not every second
    "aac": ("adts", "aac", {}),
    "flac": ("flac", "flac", {}),
}
FORMATS = ("mp3", "wav", "opus", "flac", "aac", "pcm")


class _Sink:
    """A write-only file for PyAV; what it collects is taken after each sentence."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: Any) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


def wav_header(sample_rate: int) -> bytes:
    """A 16-bit mono WAV header whose sizes say "unknown", for a stream."""
    unknown = 0xFFFFFFFF
    return (b"RIFF" + struct.pack("<I", unknown) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
            + b"data" + struct.pack("<I", unknown))


class StreamEncoder:
    """Mono int16 PCM at ``in_rate`` in, ``fmt`` bytes at ``out_rate`` out, piece by piece."""

    def __init__(self, fmt: str, in_rate: int, out_rate: int) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown audio format {fmt!r}")
        self.fmt = fmt
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._resampler = (av.AudioResampler(format="s16", layout="mono", rate=out_rate)
                           if in_rate != out_rate else None)
        self._sink = _Sink()
        self._container: Any = None
        self._stream: Any = None
        self._pending = wav_header(out_rate) if fmt == "wav" else b""
        if fmt in CONTAINERS:
            muxer, codec, options = CONTAINERS[fmt]
            self._container = av.open(self._sink, mode="w", format=muxer, options=options)
            self._stream = self._container.add_stream(codec, rate=out_rate, layout="mono")

    def _frames(self, pcm: np.ndarray | None) -> list[Any]:
        if pcm is None:
            return self._resampler.resample(None) if self._resampler else []
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm, dtype=np.int16)[np.newaxis, :],
                                           format="s16", layout="mono")
        frame.sample_rate = self.in_rate
        return self._resampler.resample(frame) if self._resampler else [frame]

    def _write(self, frames: list[Any]) -> None:
        for frame in frames:
            if self._stream is None:
                self._pending += frame.to_ndarray().astype("<i2").tobytes()
            else:
                for packet in self._stream.encode(frame):
                    self._container.mux(packet)

    def _take(self) -> bytes:
        out = self._pending + self._sink.take()
        self._pending = b""
        return out

    def add(self, pcm: np.ndarray) -> bytes:
        """Encode one more piece; returns the bytes the format could emit so far (maybe none)."""
        self._write(self._frames(pcm))
        return self._take()

    def finish(self) -> bytes:
        """Flush the resampler, the encoder and the container; the last bytes of the file."""
        self._write(self._frames(None))
        if self._stream is not None:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
        return self._take()

    def close(self) -> None:
        """Release the encoder without finishing (the client went away)."""
        if self._container is not None:
            try:
                self._container.close()
            except (av.error.FFmpegError, ValueError):
                pass
