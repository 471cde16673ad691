"""What the gateway makes of a client's image or sound before an engine sees it (serving/media_decode.py, and the
base64 and data: URL readers of serving/media_sources.py): real Pillow and PyAV on files made in the test."""

from __future__ import annotations

import base64
import io
import wave

import pytest
from PIL import Image

from appliance.engines.multimodal import ImageCost, MediaError
from appliance.serving.errors import ErrorCode, ApiError
from appliance.serving.media_decode import PartRefused, TooLong, decode_audio, decode_image, sniff
from appliance.serving.media_sources import decode_base64, parse_data_url
from tests.support.audio import audio_file, encode, tone

QWEN = ImageCost(max_pixels=28 * 28 * 1280)  # the tiny omni model's processor
MANY = 100_000_000


def image_bytes(size: tuple[int, int], fmt: str = "PNG", mode: str = "RGB", colour: object = (200, 30, 10),
                **save: object) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, colour).save(out, fmt, **save)  # type: ignore[arg-type]
    return out.getvalue()


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF"])
def test_each_image_format_is_sent_as_a_jpeg_of_the_size_the_processor_would_make(fmt: str) -> None:
    picture = decode_image(image_bytes((640, 480), fmt), MANY, QWEN.resized)
    assert (picture.width, picture.height) == (640, 480)
    assert picture.sent == QWEN.resized(640, 480) == (644, 476)
    sent = opened(picture.data)
    assert (sent.format, sent.mode, sent.size) == ("JPEG", "RGB", picture.sent)
    assert QWEN.tokens(*sent.size) == QWEN.tokens(640, 480)  # the engine counts what the reservation counted


def test_a_large_photo_is_scaled_down_to_the_processors_limit() -> None:
    picture = decode_image(image_bytes((4000, 3000), "JPEG"), MANY, QWEN.resized)
    assert picture.sent == QWEN.resized(4000, 3000)
    assert picture.sent[0] * picture.sent[1] <= QWEN.max_pixels
    assert opened(picture.data).size == picture.sent


def test_without_a_processor_the_image_keeps_its_size() -> None:
    picture = decode_image(image_bytes((300, 200)), MANY)
    assert picture.sent == (300, 200) and opened(picture.data).size == (300, 200)


def test_transparency_becomes_white_as_vllm_makes_it() -> None:
    picture = decode_image(image_bytes((56, 56), "PNG", "RGBA", (0, 0, 255, 0)), MANY, QWEN.resized)
    assert all(channel >= 253 for channel in opened(picture.data).getpixel((10, 10)))  # white, within JPEG's error


def test_a_photo_taken_sideways_is_turned_as_its_exif_says() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait
    data = image_bytes((120, 60), "JPEG", exif=exif.tobytes())
    picture = decode_image(data, MANY)
    assert (picture.width, picture.height) == (60, 120) and opened(picture.data).size == (60, 120)


def test_the_pixel_limit_is_checked_from_the_header_and_is_a_413() -> None:
    with pytest.raises(PartRefused) as caught:
        decode_image(image_bytes((2000, 1000)), 1_000_000)
    assert caught.value.too_large and "2000×1000 pixels" in caught.value.message


@pytest.mark.parametrize(("data", "says"), [
    (b"just some text, not a picture" * 4, "match no format"),
    (b"%PDF-1.7\n" + b"0" * 64, "a PDF document"),
    (audio_file(0.5), "is WAV audio, not an image"),
    (image_bytes((64, 64), "JPEG")[:200], "could not be decoded as a JPEG image"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "could not be decoded as a PNG image"),
])
def test_bytes_that_are_not_a_whole_image_are_refused_saying_what_they_are(data: bytes, says: str) -> None:
    with pytest.raises(PartRefused) as caught:
        decode_image(data, MANY, QWEN.resized)
    assert says in caught.value.message and not caught.value.too_large


def test_a_strip_the_processor_refuses_is_refused_before_decoding() -> None:
    with pytest.raises(MediaError, match="aspect"):
        decode_image(image_bytes((3000, 10)), MANY, QWEN.resized)


def wav_of(data: bytes) -> tuple[int, int, int, int]:
    with wave.open(io.BytesIO(data)) as sound:
        return sound.getnchannels(), sound.getsampwidth(), sound.getframerate(), sound.getnframes()


@pytest.mark.parametrize("kind", ["wav", "mp3"])
def test_audio_becomes_16_khz_mono_16_bit_wav_of_the_same_length(kind: str) -> None:
    sound = decode_audio(encode(tone(2.0, 44100), 44100, kind), 60)
    channels, width, rate, frames = wav_of(sound.data)
    assert (channels, width, rate) == (1, 2, 16000) and frames == sound.samples
    assert sound.seconds == pytest.approx(2.0, abs=0.06)  # an MP3 encoder pads a frame or so


def test_stereo_wav_is_mixed_to_mono() -> None:
    out = io.BytesIO()
    with wave.open(out, "wb") as sound:
        sound.setnchannels(2)
        sound.setsampwidth(2)
        sound.setframerate(16000)
        sound.writeframes(tone(1.0).repeat(2).tobytes())
    assert wav_of(decode_audio(out.getvalue(), 60).data)[:3] == (1, 2, 16000)


def test_decoding_stops_at_the_longest_sound_taken() -> None:
    with pytest.raises(TooLong) as caught:
        decode_audio(audio_file(20.0, "mp3"), 3)
    assert 3 < caught.value.seconds < 4  # stopped soon after the limit, not at the end


@pytest.mark.parametrize(("data", "says"), [
    (b"RIFF\x00\x00\x00\x00WAVEjunk" * 4, "could not be decoded as WAV audio"),
    (b"ID3" + b"\x00" * 64, "could not be decoded as MP3 audio"),
    (image_bytes((32, 32)), "is a PNG image, not audio"),
    (b"hello" * 20, "match no format"),
])
def test_bytes_that_are_not_a_sound_are_refused_saying_what_they_are(data: bytes, says: str) -> None:
    with pytest.raises(PartRefused) as caught:
        decode_audio(data, 60)
    assert says in caught.value.message


def test_an_mp3_without_an_id3_tag_is_known_by_its_frame_header() -> None:
    data = audio_file(0.5, "mp3")
    start = data.find(b"\xff\xfb") if not data.startswith(b"\xff") else 0
    assert sniff(data) == "audio/mpeg" and sniff(data[start:]) == "audio/mpeg"
    assert sniff(b"\xff\xd8\xff\xe0") == "image/jpeg"  # a JPEG's first bytes look like no MP3 frame


def test_base64_wrapped_in_lines_is_read_and_garbage_is_refused() -> None:
    data = bytes(range(256)) * 10
    wrapped = base64.encodebytes(data).decode()  # 76 characters a line
    assert decode_base64(wrapped, "f", 10_000) == data
    with pytest.raises(ApiError) as caught:
        decode_base64("not*base64", "f", 10_000)
    assert caught.value.code == ErrorCode.VALIDATION_ERROR and caught.value.details == [
        {"field": "f", "message": "is not valid base64"}]


def test_base64_over_the_limit_is_a_413_before_it_is_decoded() -> None:
    with pytest.raises(ApiError) as caught:
        decode_base64("A" * 4_000_000, "messages[0].content[1].image_url.url", 1_000_000)
    assert caught.value.code == ErrorCode.PAYLOAD_TOO_LARGE
    assert caught.value.details and caught.value.details[0]["field"] == "messages[0].content[1].image_url.url"


def test_a_data_url_gives_its_bytes_and_declared_type() -> None:
    fetched = parse_data_url("data:Image/PNG;base64," + base64.b64encode(b"abc").decode(), "f", 100)
    assert (fetched.data, fetched.declared) == (b"abc", "image/png")
    for bad in ("data:image/png,abc", "data:image/png;base64"):
        with pytest.raises(ApiError):
            parse_data_url(bad, "f", 100)
