"""A request's images and sounds: checked against the model and the limits, read, decoded, encoded again, costed.

``MediaParts`` takes one request's parts one at a time, each named by the
field it came in (``messages[1].content[2].image_url.url``), and returns the
part the engine gets: a ``data:`` URL of bytes the gateway decoded and
encoded itself (serving/media_decode.py), never the client's bytes or a URL.
On the way it refuses, naming that field, a part the model cannot take (its
catalogue ``capabilities``), one past the model's or the appliance's count,
size, pixel or length limits, or bytes that are not what they claim.

It also sums what the parts cost in prompt tokens, the upper bound a budget
reserves (engines/multimodal.py: exact for the processors it knows). For a
model whose media costs cannot be read (a remote one, an architecture it does
not know) each part counts as the model's whole context window (or
``UNKNOWN_PART_TOKENS`` without one), and its images are passed at their own size.

serving/chat.py calls ``check_chat`` once per request. Anything else that
carries parts turns them into chat parts before the chat service and names
them its own way (``check_chat``'s ``where``): the Responses API makes its
``input_image`` an ``image_url`` part (``scaigrid://file/{id}`` for a
``file_id``) and its ``input_file`` a ``file`` part (serving/response_chat.py).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import json
import os
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from appliance.catalogue import ModelEntry
from appliance.engines.multimodal import AudioCost, ImageCost, MediaError, MultimodalFacts, read_facts
from appliance.protocol.chat import (AudioPart, ChatRequest, FilePart, ImagePart, ImageUrl, InputAudio, TextPart,
                                    UserMessage)
from appliance.serving.context import Call
from appliance.serving.errors import ApiError, ErrorCode, validation_error
from appliance.serving.media_decode import (AUDIO_FORMATS, IMAGE_FORMATS, PartRefused, Picture, Sound, TooLong,
                                            canonical, decode_audio, decode_image, describe, sniff)
from appliance.serving.media_sources import Fetched, decode_base64, parse_data_url, read_uploaded, read_url

Medium = Literal["image", "audio"]
CAPABILITY: dict[Medium, str] = {"image": "vision", "audio": "audio_input"}
PLURAL: dict[Medium, str] = {"image": "images", "audio": "sounds"}
UNKNOWN_PART_TOKENS = 16384  # a part's bound for a model of unknown costs and no context window
LOW_DETAIL_PIXELS = 512 * 512  # detail "low": at most this many pixels (OpenAI's low-detail image is 512×512)
AUDIO_FORMAT_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg"}

# Decoding runs off the event loop on threads of its own, so a burst of large images cannot take the threads
# the database calls run on; as many as there are cores (Pillow and FFmpeg release the GIL while they work).
_DECODERS = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="media-decode")
T = TypeVar("T")


MADE_CACHE_BYTES = 64 * 1024 * 1024


Made = tuple[str, int, int]  # the engine's data, and an image's width and height or a sound's samples and rate


class MadeParts:
    """The parts made lately, by a digest of the client's bytes and what they were made for.

    A conversation sends its images again with every turn; the same bytes made
    into a part for the same processor make the same part, so a repeat costs a
    hash instead of a decode. Only parts that passed every check are kept, and
    a hit is checked against this request's limits again (its length, its
    tokens). Bounded by the size of the kept strings, least recently used out.
    """

    def __init__(self, max_bytes: int = MADE_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.used = 0
        self._items: OrderedDict[Hashable, Made] = OrderedDict()

    def get(self, key: Hashable) -> Made | None:
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
        return found

    def put(self, key: Hashable, made: Made) -> None:
        if len(made[0]) > self.max_bytes or key in self._items:
            return
        self._items[key] = made
        self.used += len(made[0])
        while self.used > self.max_bytes:
            _, (dropped, _w, _h) = self._items.popitem(last=False)
            self.used -= len(dropped)


_MADE = MadeParts()  # used from the event loop only


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


@functools.lru_cache(maxsize=64)
def _read_facts(path: str, options: str) -> MultimodalFacts | None:
    return read_facts(Path(path), json.loads(options))


def facts_of(entry: ModelEntry) -> MultimodalFacts | None:
    """The model's media costs and limits, read once from its directory; None for a remote model or an unknown
    architecture."""
    if entry.engine == "remote" or entry.path is None:
        return None
    return _read_facts(str(entry.path), json.dumps(entry.engine_options, sort_keys=True, default=str))


@dataclass(frozen=True)
class Limits:
    part_bytes: int
    image_pixels: int
    parts: int
    audio_seconds: float

    @classmethod
    def of(cls, settings: Any) -> Limits:
        return cls(settings.max_media_part_bytes, settings.max_image_pixels, settings.max_media_parts,
                   settings.max_audio_seconds)


def refused(field: str, problem: PartRefused) -> ApiError:
    if problem.too_large:
        return ApiError(ErrorCode.PAYLOAD_TOO_LARGE, f"{field}: {problem.message}.",
                        details=[{"field": field, "message": problem.message}])
    return validation_error(field, problem.message)


class MediaParts:
    """The media of one request to ``entry``, taken part by part."""

    def __init__(self, call: Call, entry: ModelEntry) -> None:
        self.call = call
        self.entry = entry
        self.facts = facts_of(entry)
        self.limits = Limits.of(call.runtime.settings)
        self.tokens = 0  # prompt tokens the parts cost, at most
        self.audio_seconds = 0.0
        self.fields: dict[Medium, list[str]] = {"image": [], "audio": []}

    # --- the three kinds of part ------------------------------------------

    async def image(self, url: str, field: str, detail: str | None = None) -> dict[str, Any]:
        """An image part by URL (data:, own media, uploaded file, allowed http): the engine's image_url part."""
        self._admit("image", field)
        cost = self._image_cost(detail)
        # A data: URL seen before is known by its text: a repeat skips even the base64.
        limits = (self.limits.part_bytes, self.limits.image_pixels)
        quick = ("image-url", _digest(url), cost, limits) if url.startswith("data:") else None
        made = _MADE.get(quick) if quick else None
        if made is None:
            made = await self._make_image(await read_url(self.call, url, field, self.limits.part_bytes), field, cost)
            if quick:
                _MADE.put(quick, made)
        return self._image_part(made, field, cost)

    async def audio(self, data: str, audio_format: str, field: str) -> dict[str, Any]:
        """An input_audio part (base64 ``data`` of ``audio_format`` wav or mp3): the engine's input_audio part."""
        self._admit("audio", field)
        quick = ("audio-data", _digest(audio_format + ":" + data), self._audio_rate(), self.limits.part_bytes)
        made = _MADE.get(quick)
        if made is None:
            fetched = Fetched(decode_base64(data, field, self.limits.part_bytes),
                              AUDIO_FORMAT_TYPES.get(audio_format, audio_format))
            made = await self._make_audio(fetched, field, f"its format is '{audio_format}'")
            _MADE.put(quick, made)
        return self._audio_part(made, field)

    async def file(self, file_id: str | None, file_data: str | None, field: str) -> dict[str, Any]:
        """OpenAI's file part (an uploaded ``file_id``, or ``file_data`` in base64 or a data: URL): taken as the
        image or the sound it turns out to be."""
        max_bytes = self.limits.part_bytes
        if file_id is not None:
            fetched = await read_uploaded(self.call, file_id, field, max_bytes)
        elif file_data is not None and file_data.startswith("data:"):
            fetched = parse_data_url(file_data, field, max_bytes)
        else:
            fetched = Fetched(decode_base64(file_data or "", field, max_bytes))
        kind = sniff(fetched.data)
        if kind in IMAGE_FORMATS:
            self._admit("image", field)
            cost = self._image_cost(None)
            return self._image_part(await self._make_image(fetched, field, cost), field, cost)
        if kind in AUDIO_FORMATS:
            self._admit("audio", field)
            return self._audio_part(await self._make_audio(fetched, field), field)
        taken = " or ".join(PLURAL[m] for m in ("image", "audio") if CAPABILITY[m] in self.entry.capabilities)
        raise validation_error(field, f"is {describe(kind)}; a file part on this appliance carries an image (PNG, "
                                      f"JPEG, WEBP, GIF) or a sound (WAV, MP3), and model '{self.entry.slug}' "
                                      f"takes {taken or 'neither'}")

    # --- shared steps -------------------------------------------------------

    def _admit(self, medium: Medium, field: str) -> None:
        """Refuse a part the model cannot take, or one past a count, before reading any of it."""
        entry = self.entry
        if CAPABILITY[medium] not in entry.capabilities:
            has = ", ".join(entry.capabilities) or "none: text only"
            raise validation_error(field, f"model '{entry.slug}' takes no {PLURAL[medium]} (its capabilities: {has})")
        seen = self.fields[medium]
        limit = self._per_prompt(medium)
        if limit is not None and len(seen) >= limit:
            raise validation_error(field, f"model '{entry.slug}' takes at most {limit} {PLURAL[medium]} in one "
                                          "request")
        if sum(len(fields) for fields in self.fields.values()) >= self.limits.parts:
            raise validation_error(field, f"one request may carry at most {self.limits.parts} images and sounds "
                                          "(the max_media_parts setting)")
        seen.append(field)

    def _per_prompt(self, medium: Medium) -> int | None:
        if self.facts is not None:
            return self.facts.images_per_prompt if medium == "image" else self.facts.audios_per_prompt
        limits = self.entry.engine_options.get("limit_mm_per_prompt")
        return limits.get(medium) if isinstance(limits, dict) else None

    def _image_cost(self, detail: str | None) -> ImageCost | None:
        cost = self.facts.image if self.facts is not None else None
        if cost is not None and detail == "low":
            cost = ImageCost(cost.patch_size, cost.merge_size, min(cost.min_pixels, LOW_DETAIL_PIXELS),
                             min(cost.max_pixels, LOW_DETAIL_PIXELS))
        return cost

    async def _make_image(self, fetched: Fetched, field: str, cost: ImageCost | None) -> Made:
        """The engine's data: URL for the image in ``fetched``, and the image's width and height."""
        kind = sniff(fetched.data)
        if kind in IMAGE_FORMATS:  # a lie is refused before the decoding (other bytes: the decoder says what they are)
            self._check_declared(fetched, field, kind)
        key = ("image", hashlib.sha256(fetched.data).digest(), cost, self.limits.image_pixels)
        made = _MADE.get(key)
        if made is None:
            fit = _fit(cost) if cost is not None else None
            picture: Picture = await _decode(field, decode_image, fetched.data, self.limits.image_pixels, fit)
            made = (f"data:{picture.media_type};base64,{base64.b64encode(picture.data).decode()}", picture.width,
                    picture.height)
            _MADE.put(key, made)
        return made

    def _image_part(self, made: Made, field: str, cost: ImageCost | None) -> dict[str, Any]:
        url, width, height = made
        self._add(field, cost.tokens(width, height) if cost is not None else None)
        return {"type": "image_url", "image_url": {"url": url}}

    def _audio_rate(self) -> int:
        cost = self.facts.audio if self.facts is not None else None
        return cost.sampling_rate if cost is not None else AudioCost().sampling_rate

    def _longest(self) -> tuple[float, float | None, float]:
        """The longest sound this part may be; the model's limit of one part, and what the request has left."""
        per_part = self.facts.max_audio_seconds if self.facts is not None else None
        left = self.limits.audio_seconds - self.audio_seconds
        return (min(left, per_part) if per_part is not None else left), per_part, left

    async def _make_audio(self, fetched: Fetched, field: str, claim: str | None = None) -> Made:
        """The engine's base64 WAV for the sound in ``fetched``, its samples and their rate."""
        kind = sniff(fetched.data)
        if kind in AUDIO_FORMATS:  # a lie is refused before the decoding
            self._check_declared(fetched, field, kind, claim)
        rate = self._audio_rate()
        key = ("audio", hashlib.sha256(fetched.data).digest(), rate)
        made = _MADE.get(key)
        if made is None:
            try:
                sound: Sound = await _decode(field, decode_audio, fetched.data, self._longest()[0], rate)
            except TooLong:
                raise self._too_long(field) from None
            made = (base64.b64encode(sound.data).decode(), sound.samples, rate)
            _MADE.put(key, made)
        return made

    def _audio_part(self, made: Made, field: str) -> dict[str, Any]:
        data, samples, rate = made
        if samples > self._longest()[0] * rate:  # made for a request that could take more
            raise self._too_long(field)
        cost = self.facts.audio if self.facts is not None else None
        tokens = None
        if cost is not None:
            try:
                tokens = cost.tokens_for_samples(samples)
            except MediaError as exc:
                raise validation_error(field, str(exc)) from None
        self.audio_seconds += samples / rate
        self._add(field, tokens)
        return {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}}

    def _too_long(self, field: str) -> ApiError:
        _longest, per_part, left = self._longest()
        if per_part is not None and per_part <= left:
            why = f"longer than model '{self.entry.slug}' takes in one part ({per_part:.1f} s)"
        else:
            why = (f"past the {self.limits.audio_seconds:g} s of audio one request may carry (the max_audio_seconds "
                   "setting)")
        return validation_error(field, f"is audio {why}")

    def _check_declared(self, fetched: Fetched, field: str, kind: str, claim: str | None = None) -> None:
        """A declared media type (a data: URL's, input_audio's format) must be what the bytes are."""
        declared = canonical(fetched.declared) if fetched.declared else None
        if declared is None or declared == kind or declared == "application/octet-stream":
            return
        claim = claim or f"it is declared as {declared}"
        raise validation_error(field, f"{claim}, but its bytes are {describe(kind)}")

    def _add(self, field: str, tokens: int | None) -> None:
        window = self.entry.context_window
        if tokens is None:
            self.tokens += window or UNKNOWN_PART_TOKENS
            return
        self.tokens += tokens
        if window and self.tokens > window:
            raise validation_error(field, f"the images and sounds up to this one take {self.tokens} prompt tokens, "
                                          f"more than model '{self.entry.slug}' holds ({window})")

    # --- an engine's refusal, named ----------------------------------------

    def name_refusal(self, error: ApiError) -> ApiError:
        """vLLM names a medium (``param: "image"``), not a part: the first part of that medium instead."""
        if error.code != ErrorCode.VALIDATION_ERROR or not error.details:
            return error
        given = error.details[0].get("field", "")
        medium: Medium | None = "image" if given in ("image", "images") else "audio" if given in ("audio",
                                                                                                   "audios") else None
        if medium is None or not self.fields[medium]:
            return error
        message = error.details[0].get("message") or error.message
        return validation_error(self.fields[medium][0], message)


def _fit(cost: ImageCost) -> Callable[[int, int], tuple[int, int]]:
    def fit(width: int, height: int) -> tuple[int, int]:
        try:
            return cost.resized(width, height)
        except MediaError as exc:
            raise PartRefused(str(exc)) from None
    return fit


async def _decode(field: str, decode: Callable[..., T], *args: Any) -> T:
    try:
        return await asyncio.get_running_loop().run_in_executor(_DECODERS, decode, *args)
    except TooLong:
        raise
    except PartRefused as problem:
        raise refused(field, problem) from None


# --- chat requests ------------------------------------------------------------


@dataclass(frozen=True)
class CheckedChat:
    body: ChatRequest  # what the engine gets: every media part replaced by bytes the gateway made
    text_only: ChatRequest  # what a tokenizer counts (the parts' tokens are in ``tokens``)
    tokens: int
    media: MediaParts | None  # None: the request carried no media


def has_media(body: ChatRequest) -> bool:
    return any(isinstance(message, UserMessage) and isinstance(message.content, list)
               and any(not isinstance(part, TextPart) for part in message.content) for message in body.messages)


def _as_part(made: dict[str, Any]) -> ImagePart | AudioPart:
    """A part this module made, as the request's model (built, not validated again: its data is megabytes)."""
    if made["type"] == "image_url":
        return ImagePart.model_construct(type="image_url", image_url=ImageUrl.model_construct(**made["image_url"]))
    return AudioPart.model_construct(type="input_audio", input_audio=InputAudio.model_construct(**made["input_audio"]))


def message_part(message: int, part: int, field: str) -> str:
    """A chat request's name for ``field`` (``image_url.url``) of a content part."""
    return f"messages[{message}].content[{part}].{field}"


PartNames = Callable[[int, int, str], str]  # (message, part, the chat part's field) → the name a refusal gives


async def check_chat(call: Call, body: ChatRequest, entry: ModelEntry,
                     where: PartNames = message_part) -> CheckedChat:
    """Check, read and encode again every media part of ``body`` for ``entry``; ``where(message, part, field)``
    names a part's field (the Responses API names its own: ``input[1].content[2].file_id``)."""
    if not has_media(body):
        return CheckedChat(body, body, 0, None)
    media = MediaParts(call, entry)
    messages, text_only = [], []
    for m, message in enumerate(body.messages):
        if not (isinstance(message, UserMessage) and isinstance(message.content, list)):
            messages.append(message)
            text_only.append(message)
            continue
        parts: list[Any] = []
        for p, part in enumerate(message.content):
            if isinstance(part, ImagePart):
                made = await media.image(part.image_url.url, where(m, p, "image_url.url"), part.image_url.detail)
                parts.append(_as_part(made))
            elif isinstance(part, AudioPart):
                made = await media.audio(part.input_audio.data, part.input_audio.format,
                                         where(m, p, "input_audio.data"))
                parts.append(_as_part(made))
            elif isinstance(part, FilePart):
                source = "file_id" if part.file.file_id is not None else "file_data"
                made = await media.file(part.file.file_id, part.file.file_data, where(m, p, f"file.{source}"))
                parts.append(_as_part(made))
            else:
                parts.append(part)
        messages.append(message.model_copy(update={"content": parts}))
        texts = [part for part in message.content if isinstance(part, TextPart)]
        text_only.append(message.model_copy(update={"content": texts or ""}))
    return CheckedChat(body.model_copy(update={"messages": messages}),
                       body.model_copy(update={"messages": text_only}), media.tokens, media)
