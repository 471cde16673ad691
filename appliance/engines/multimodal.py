"""What an image or a sound costs a multimodal chat model, read from its model directory (no torch, no engine).

The gateway reserves a budget before a request runs and refuses a part the
engine would refuse; both need the prompt tokens a part will cost before the
engine has seen it. Those follow from the model's processor config and its
architecture:

- **Images, Qwen2-VL family** (Qwen2-VL, Qwen2.5-VL, Qwen2.5-Omni): the
  processor resizes an image to multiples of ``patch_size * merge_size``
  pixels (28) within ``min_pixels``…``max_pixels``, and every 28×28 tile is
  one token. A 512×512 image is 18×18 tiles: 324 tokens.
- **Audio, Whisper features into Qwen2-Audio's tower** (Qwen2-Audio,
  Qwen2.5-Omni): one mel frame per ``hop_length`` samples (10 ms at 16 kHz),
  two stride-2 steps in the tower: 25 tokens a second.

Each part also costs the two tokens its template wraps it in
(``<|vision_bos|>…<|vision_eos|>``, ``<|audio_bos|>…<|audio_eos|>``). The
counts are exact for these processors (vLLM's ``usage.prompt_tokens`` grows by
exactly them), so they are also the upper bound a budget reserves.

vLLM limits each item to its encoder cache: ``max_num_batched_tokens`` or,
if larger, the largest item the processor can make (it sizes the cache for
30 s of audio). It resamples audio with torchaudio, which vLLM's CPU build
lacks: hand it audio at ``audio.sampling_rate`` (16 kHz mono), so that it never
resamples.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WRAPPER_TOKENS = 2  # the begin and end markers around a media part's placeholders
MAX_ASPECT_RATIO = 200  # the Qwen2-VL processor refuses longer strips
PROFILED_AUDIO_SECONDS = 30  # vLLM sizes its encoder cache for at most this much audio (Whisper's window)

# Architectures (config.json) whose processors follow the recipes above.
QWEN_VISION = {"Qwen2VLForConditionalGeneration", "Qwen2_5_VLForConditionalGeneration", "Qwen2_5OmniModel",
               "Qwen2_5OmniForConditionalGeneration"}
QWEN_AUDIO = {"Qwen2AudioForConditionalGeneration", "Qwen2_5OmniModel", "Qwen2_5OmniForConditionalGeneration"}


class MediaError(ValueError):
    """A part the model's processor would refuse; the message says why, for a 400."""


@dataclass(frozen=True)
class ImageCost:
    patch_size: int = 14
    merge_size: int = 2
    min_pixels: int = 56 * 56
    max_pixels: int = 28 * 28 * 1280

    @property
    def tile(self) -> int:
        """Pixels along one side of what becomes one token."""
        return self.patch_size * self.merge_size

    @property
    def max_tokens(self) -> int:
        return self.max_pixels // self.tile ** 2 + WRAPPER_TOKENS

    def resized(self, width: int, height: int) -> tuple[int, int]:
        """The size the processor scales a ``width`` × ``height`` image to: multiples of the tile, within the
        pixel range, the aspect ratio kept as closely as that allows."""
        if width <= 0 or height <= 0:
            raise MediaError(f"an image of {width}×{height} pixels is empty")
        if max(width, height) / min(width, height) > MAX_ASPECT_RATIO:
            raise MediaError(f"an image of {width}×{height} pixels is longer than {MAX_ASPECT_RATIO}:1 in aspect; "
                             "this model's processor refuses it")
        tile = self.tile
        new_width, new_height = round(width / tile) * tile, round(height / tile) * tile
        if new_width * new_height > self.max_pixels:
            shrink = math.sqrt(width * height / self.max_pixels)
            new_width = max(tile, math.floor(width / shrink / tile) * tile)
            new_height = max(tile, math.floor(height / shrink / tile) * tile)
        elif new_width * new_height < self.min_pixels:
            grow = math.sqrt(self.min_pixels / (width * height))
            new_width = math.ceil(width * grow / tile) * tile
            new_height = math.ceil(height * grow / tile) * tile
        return new_width, new_height

    def tokens(self, width: int, height: int) -> int:
        """Prompt tokens of one image part of ``width`` × ``height`` pixels, its two markers included."""
        new_width, new_height = self.resized(width, height)
        return (new_width // self.tile) * (new_height // self.tile) + WRAPPER_TOKENS


@dataclass(frozen=True)
class AudioCost:
    sampling_rate: int = 16000
    hop_length: int = 160

    @property
    def tokens_per_second(self) -> float:
        return self.sampling_rate / self.hop_length / 4

    def tokens_for_samples(self, samples: int) -> int:
        """Prompt tokens of one audio part of ``samples`` samples at ``sampling_rate``, its markers included."""
        frames = -(-samples // self.hop_length)  # the feature extractor's attention mask: one per started hop
        after_first_stride = (frames - 1) // 2 + 1
        placeholders = (after_first_stride - 2) // 2 + 1
        if placeholders <= 0:
            raise MediaError(f"audio of {samples / self.sampling_rate:.3f} s is too short for this model "
                             f"(at least {self.min_seconds:.2f} s)")
        return placeholders + WRAPPER_TOKENS

    def tokens(self, seconds: float) -> int:
        """An upper bound of the prompt tokens of ``seconds`` of audio (exact for whole samples)."""
        return self.tokens_for_samples(math.ceil(seconds * self.sampling_rate))

    @property
    def min_seconds(self) -> float:
        return (2 * self.hop_length + 1) / self.sampling_rate  # three mel frames make the first token

    def max_seconds(self, max_placeholders: int) -> float:
        """The longest clip whose placeholders fit in ``max_placeholders`` (markers not counted)."""
        return (4 * max_placeholders + 2) * self.hop_length / self.sampling_rate


@dataclass(frozen=True)
class MultimodalFacts:
    """A model's media costs and limits; ``image`` / ``audio`` is None where the model takes no such part."""

    image: ImageCost | None
    audio: AudioCost | None
    images_per_prompt: int | None  # None: the engine's default (vLLM: 999)
    audios_per_prompt: int | None
    max_item_tokens: int  # placeholders of one item the engine accepts (vLLM's encoder cache)

    @property
    def capabilities(self) -> tuple[str, ...]:
        return tuple(name for name, cost in (("vision", self.image), ("audio_input", self.audio)) if cost)

    @property
    def max_audio_seconds(self) -> float | None:
        return self.audio.max_seconds(self.max_item_tokens) if self.audio else None

    def image_tokens(self, width: int, height: int) -> int:
        if self.image is None:
            raise MediaError("this model takes no image parts")
        return self.image.tokens(width, height)

    def audio_tokens(self, seconds: float) -> int:
        if self.audio is None:
            raise MediaError("this model takes no audio parts")
        if self.max_audio_seconds is not None and seconds > self.max_audio_seconds:
            raise MediaError(f"audio of {seconds:.1f} s is longer than this model takes in one part "
                             f"({self.max_audio_seconds:.1f} s)")
        return self.audio.tokens(seconds)


def read_facts(model_dir: Path, engine_options: Mapping[str, Any] | None = None) -> MultimodalFacts | None:
    """The media facts of the model in ``model_dir`` served with vLLM's ``engine_options``; None for a model whose
    architecture or processor this module does not know (its media costs are then unknown, not zero)."""
    options = dict(engine_options or {})
    architectures = set(_json(model_dir / "config.json").get("architectures") or [])
    processor = _processor_config(model_dir)
    overrides = options.get("mm_processor_kwargs") or {}
    limits = options.get("limit_mm_per_prompt") or {}
    image = _image_cost({**processor.get("image", {}), **overrides}) if architectures & QWEN_VISION else None
    audio = _audio_cost(processor.get("audio", {})) if architectures & QWEN_AUDIO else None
    if limits.get("image") == 0:
        image = None
    if limits.get("audio") == 0:
        audio = None
    if image is None and audio is None:
        return None
    largest = [image.max_tokens - WRAPPER_TOKENS] if image else []
    if audio:
        largest.append(audio.tokens(PROFILED_AUDIO_SECONDS) - WRAPPER_TOKENS)
    batched = options.get("max_num_batched_tokens")
    return MultimodalFacts(image=image, audio=audio, images_per_prompt=limits.get("image"),
                           audios_per_prompt=limits.get("audio"),
                           max_item_tokens=max(*largest, batched or 0))


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    return data if isinstance(data, dict) else {}


def _processor_config(model_dir: Path) -> dict[str, dict[str, Any]]:
    """The image processor's and the feature extractor's settings: one flat preprocessor_config.json (as the
    Qwen repositories ship it), or the per-part sections of a newer processor_config.json."""
    flat = _json(model_dir / "preprocessor_config.json")
    nested = _json(model_dir / "processor_config.json")
    image = {**flat, **(nested.get("image_processor") or {})}
    audio = {**flat, **(nested.get("feature_extractor") or {})}
    return {"image": image, "audio": audio}


def _image_cost(config: Mapping[str, Any]) -> ImageCost:
    default = ImageCost()
    size = config.get("size") or {}
    return ImageCost(
        patch_size=int(config.get("patch_size", default.patch_size)),
        merge_size=int(config.get("merge_size", default.merge_size)),
        # The processor's own precedence: min_pixels / max_pixels, then size, then its defaults.
        min_pixels=int(config.get("min_pixels") or size.get("shortest_edge") or default.min_pixels),
        max_pixels=int(config.get("max_pixels") or size.get("longest_edge") or default.max_pixels),
    )


def _audio_cost(config: Mapping[str, Any]) -> AudioCost:
    default = AudioCost()
    return AudioCost(sampling_rate=int(config.get("sampling_rate", default.sampling_rate)),
                     hop_length=int(config.get("hop_length", default.hop_length)))
