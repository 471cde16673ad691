"""A client's image or sound, decoded with real decoders and encoded again: the only media bytes an engine is handed.

The gateway never forwards what a client sent. Each part is sniffed (its magic
bytes, not its declared type), decoded in full by Pillow or PyAV within the
pixel and length limits, and encoded anew:

- images at the size the model's processor would scale them to (``fit``), so
  the engine's token count is unchanged and its own resize has nothing left to
  do; as JPEG of quality 95 without chroma subsampling: visually lossless, a
  few milliseconds to write, and about the size of the photo the client sent.
  (A PNG of a photo took ~100 ms to write here, and vLLM spent more on a 3 MB
  BMP's JSON and base64 than the gateway saved writing it: docs/benchmarks.md);
- sounds as 16 kHz mono 16-bit WAV: the rate the audio models' feature
  extractors take, so vLLM never resamples (its CPU build cannot).

A decoder's failure on the client's bytes is the client's bad input
(``PartRefused``), never a 500.
"""

from __future__ import annotations

import io
import wave
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

# What a part may be, by its magic bytes: the image formats OpenAI takes, and its two audio formats.
IMAGE_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP", "image/gif": "GIF"}
AUDIO_FORMATS = {"audio/wav": "wav", "audio/mpeg": "mp3"}
DESCRIPTIONS = {"image/png": "a PNG image", "image/jpeg": "a JPEG image", "image/webp": "a WEBP image",
                "image/gif": "a GIF image", "audio/wav": "WAV audio", "audio/mpeg": "MP3 audio",
                "application/pdf": "a PDF document"}
# Other names clients give the same types.
ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "audio/wave": "audio/wav",
           "audio/x-wav": "audio/wav", "audio/vnd.wave": "audio/wav", "audio/mp3": "audio/mpeg",
           "audio/x-mp3": "audio/mpeg", "audio/mpeg3": "audio/mpeg"}

JPEG_QUALITY = 95
ORIENTATION_TAG = 0x0112  # EXIF: how a camera held the picture
TURNS = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
         5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
         8: Image.Transpose.ROTATE_90}
WHITE = (255, 255, 255)  # what transparency becomes (as vLLM's own RGB conversion does)


class PartRefused(Exception):
    """The part cannot be used; ``message`` says why, for a person. ``too_large``: a 413 rather than a 400."""

    def __init__(self, message: str, too_large: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.too_large = too_large


def canonical(media_type: str) -> str:
    media_type = media_type.strip().lower()
    return ALIASES.get(media_type, media_type)


def sniff(data: bytes) -> str | None:
    """The media type ``data`` is, by its first bytes; None for anything this appliance does not take."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "audio/wav"
    if data[:3] == b"ID3" or _mp3_frame_header(data[:4]):
        return "audio/mpeg"
    if data[:5] == b"%PDF-":
        return "application/pdf"  # never taken, but named in the refusal
    return None


def _mp3_frame_header(head: bytes) -> bool:
    """An MPEG-1/2 Layer III frame header: 11 sync bits, a known version, a bitrate and a sample rate."""
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    version, layer = (head[1] >> 3) & 3, (head[1] >> 1) & 3
    bitrate, rate = head[2] >> 4, (head[2] >> 2) & 3
    return version != 1 and layer == 1 and bitrate not in (0, 15) and rate != 3


def describe(media_type: str | None) -> str:
    if media_type is None:
        return "of no format this appliance reads"
    return DESCRIPTIONS.get(media_type, media_type)


def not_a(kind: str | None, wanted: str) -> PartRefused:
    """The refusal of bytes sniffed as ``kind`` where ``wanted`` (a list of formats) was needed."""
    if kind is None:
        return PartRefused(f"is not {wanted}: its first bytes match no format this appliance reads")
    return PartRefused(f"is {describe(kind)}, not {wanted}")


# --- images ---------------------------------------------------------------


@dataclass(frozen=True)
class Picture:
    data: bytes  # what the engine gets
    media_type: str
    width: int  # as the client's image shows (EXIF orientation applied)
    height: int
    sent: tuple[int, int]  # width and height of what the engine gets


def decode_image(data: bytes, max_pixels: int, fit: Callable[[int, int], tuple[int, int]] | None = None) -> Picture:
    """Decode ``data`` in full and encode it again, scaled to ``fit(width, height)`` (None: as it is).

    PartRefused for bytes that are not a PNG, JPEG, WEBP or GIF image, or do not
    decode whole, or over ``max_pixels`` (checked from the header, before any decoding).
    """
    kind = sniff(data)
    if kind not in IMAGE_FORMATS:
        raise not_a(kind, "an image (PNG, JPEG, WEBP or GIF)")
    try:
        image = Image.open(io.BytesIO(data), formats=[IMAGE_FORMATS[kind]])
        width, height = image.size
    except Image.DecompressionBombError:
        raise PartRefused(f"is {describe(kind)} of more pixels than this appliance takes ({max_pixels})",
                          too_large=True) from None
    except Exception as exc:  # noqa: BLE001 - any failure to read the client's bytes is their bad input
        raise PartRefused(f"could not be decoded as {describe(kind)} ({_reason(exc)})") from None
    if width * height > max_pixels:
        raise PartRefused(f"is {width}×{height} pixels, more than this appliance takes ({max_pixels} pixels)",
                          too_large=True)
    orientation = _orientation(image)
    turned = orientation in (5, 6, 7, 8)  # stored on its side: shown with width and height swapped
    shown = (height, width) if turned else (width, height)
    target = fit(*shown) if fit is not None else shown
    stored = (target[1], target[0]) if turned else target
    try:
        if kind == "image/jpeg" and stored[0] * stored[1] < width * height:
            image.draft("RGB", stored)  # the JPEG decoder scales down by 1/2, 1/4 or 1/8 on its own, far faster
        image.load()
        image = _rgb(image)
        if image.size != stored:
            image = image.resize(stored, Image.Resampling.BICUBIC)  # the Qwen2-VL processor's own filter
        if orientation in TURNS:
            image = image.transpose(TURNS[orientation])
    except Exception as exc:  # noqa: BLE001 - as above: a truncated or corrupt file
        raise PartRefused(f"could not be decoded as {describe(kind)} ({_reason(exc)})") from None
    out = io.BytesIO()
    image.save(out, "JPEG", quality=JPEG_QUALITY, subsampling=0)  # 0: 4:4:4, colour as sharp as the light
    return Picture(out.getvalue(), "image/jpeg", shown[0], shown[1], target)


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block: the picture as stored
        return 1
    return value if isinstance(value, int) else 1


def _rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA", "P") and (image.mode != "P" or "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, WHITE)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def _reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc).strip() or type(exc).__name__  # FFmpeg's, without its errno
    return text[:200]


# --- sounds ---------------------------------------------------------------


@dataclass(frozen=True)
class Sound:
    data: bytes  # 16-bit mono WAV at ``rate``
    samples: int
    rate: int

    @property
    def seconds(self) -> float:
        return self.samples / self.rate


class TooLong(PartRefused):
    """Audio past the longest the caller takes; ``seconds`` is how much was decoded before stopping."""

    def __init__(self, message: str, seconds: float) -> None:
        super().__init__(message)
        self.seconds = seconds


def decode_audio(data: bytes, max_seconds: float, rate: int = 16000) -> Sound:
    """Decode ``data`` (WAV or MP3) in full to mono 16-bit samples at ``rate``, as a WAV file.

    Decoding stops as soon as the sound is longer than ``max_seconds`` (TooLong),
    so a long file costs no more than the longest one taken.
    """
    kind = sniff(data)
    if kind not in AUDIO_FORMATS:
        raise not_a(kind, "audio (WAV or MP3)")
    import av  # only when a sound comes: PyAV brings FFmpeg's libraries

    limit = int(max_seconds * rate)
    pcm = bytearray()
    try:
        with av.open(io.BytesIO(data), mode="r", format=AUDIO_FORMATS[kind]) as container:
            if not container.streams.audio:
                raise PartRefused(f"is {describe(kind)} without an audio stream")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    pcm += bytes(out.planes[0])[:out.samples * 2]
                if len(pcm) // 2 > limit:
                    raise TooLong(f"is longer than {max_seconds:g} s", len(pcm) / 2 / rate)
            for out in resampler.resample(None):
                pcm += bytes(out.planes[0])[:out.samples * 2]
    except PartRefused:
        raise
    except Exception as exc:  # noqa: BLE001 - FFmpeg's errors on the client's bytes are their bad input
        raise PartRefused(f"could not be decoded as {describe(kind)} ({_reason(exc)})") from None
    samples = len(pcm) // 2
    if samples == 0:
        raise PartRefused(f"is {describe(kind)} with no sound in it")
    if samples > limit:
        raise TooLong(f"is longer than {max_seconds:g} s", samples / rate)
    out_file = io.BytesIO()
    with wave.open(out_file, "wb") as sound:
        sound.setnchannels(1)
        sound.setsampwidth(2)
        sound.setframerate(rate)
        sound.writeframes(pcm)  # PyAV's s16 is native-endian: little-endian, as WAV wants, on x86-64 and arm64
    return Sound(out_file.getvalue(), samples, rate)
