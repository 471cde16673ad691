"""What an image or a sound costs a multimodal model, from its processor config: the numbers the gateway reserves.

The expected counts are Qwen2-VL's and Qwen2.5-Omni's own (28-pixel tiles, 25 audio tokens a second); the tiny
model's test (tests/tiny_models/test_omni.py) checks them against vLLM's usage on the real engine.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.engines.multimodal import AudioCost, ImageCost, MediaError, read_facts

OMNI = "Qwen2_5OmniModel"


def model_dir(tmp_path: Path, architecture: str = OMNI, **processor: object) -> Path:
    (tmp_path / "config.json").write_text(json.dumps({"architectures": [architecture]}))
    config = {"min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "merge_size": 2,
              "sampling_rate": 16000, "hop_length": 160, **processor}
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(config))
    return tmp_path


@pytest.mark.parametrize(("size", "tiles"), [
    ((512, 512), 18 * 18),  # 512 / 28 = 18.3: rounded to 18 tiles a side
    ((64, 64), 2 * 2),
    ((640, 480), 23 * 17),
    ((10, 10), 2 * 2),  # scaled up to the smallest image, 56×56
    ((2000, 20), 71 * 1),
    ((4000, 3000), 36 * 27),  # scaled down to at most max_pixels (here 1024 tiles)
])
def test_an_image_costs_one_token_per_28_pixel_tile_plus_its_two_markers(size: tuple[int, int], tiles: int) -> None:
    image = ImageCost(min_pixels=3136, max_pixels=1024 * 28 * 28)
    assert image.tokens(*size) == tiles + 2


def test_a_large_image_is_scaled_to_the_pixel_limit_keeping_its_shape() -> None:
    image = ImageCost(max_pixels=1280 * 28 * 28)
    width, height = image.resized(4032, 3024)  # a phone photo
    assert width % 28 == 0 and height % 28 == 0 and width * height <= image.max_pixels
    assert abs(width / height - 4032 / 3024) < 0.05
    assert image.tokens(4032, 3024) <= image.max_tokens == 1280 + 2


def test_an_image_the_processor_refuses_is_a_media_error() -> None:
    with pytest.raises(MediaError, match="200:1"):
        ImageCost().tokens(20_000, 50)
    with pytest.raises(MediaError, match="empty"):
        ImageCost().tokens(0, 10)


@pytest.mark.parametrize(("seconds", "placeholders"), [(1, 25), (5, 125), (40, 1000), (81, 2025), (0.5, 12)])
def test_audio_costs_25_tokens_a_second_plus_its_two_markers(seconds: float, placeholders: int) -> None:
    assert AudioCost().tokens(seconds) == placeholders + 2
    assert AudioCost().tokens_per_second == 25


def test_a_partial_frame_is_counted_as_a_whole_one_so_the_bound_never_undershoots() -> None:
    audio = AudioCost()
    assert audio.tokens_for_samples(16_000 + 1) >= audio.tokens_for_samples(16_000)
    assert all(audio.tokens_for_samples(n) <= audio.tokens_for_samples(n + 37) for n in range(400, 40_000, 37))


def test_audio_too_short_for_one_token_is_a_media_error() -> None:
    with pytest.raises(MediaError, match="too short"):
        AudioCost().tokens(0.01)
    assert AudioCost().tokens(AudioCost().min_seconds) == 1 + 2


def test_the_longest_clip_is_the_one_whose_tokens_fill_the_engines_item_limit() -> None:
    audio = AudioCost()
    longest = audio.max_seconds(2048)
    assert 81 < longest < 82
    assert audio.tokens(longest) - 2 <= 2048 < audio.tokens(longest + 0.01) - 2


def test_the_tiny_omni_models_facts_come_from_its_directory_and_engine_options(tmp_path: Path) -> None:
    from appliance.tiny_models import omni

    options = omni.catalogue(tmp_path)[0]["engine_options"]
    (tmp_path / "config.json").write_text(json.dumps({"architectures": [OMNI]}))
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(omni.preprocessor_config()))
    facts = read_facts(tmp_path, options)
    assert facts is not None and facts.capabilities == ("vision", "audio_input")
    assert (facts.images_per_prompt, facts.audios_per_prompt) == (4, 2)
    assert facts.image_tokens(512, 512) == 326 and facts.audio_tokens(1) == 27
    assert facts.max_item_tokens == 2048 and 81 < (facts.max_audio_seconds or 0) < 82
    with pytest.raises(MediaError, match="longer than this model takes"):
        facts.audio_tokens(90)


def test_without_a_batch_size_an_item_may_be_as_large_as_the_largest_the_processor_makes(tmp_path: Path) -> None:
    facts = read_facts(model_dir(tmp_path, max_pixels=256 * 28 * 28))
    assert facts is not None and facts.max_item_tokens == 750  # 30 s of audio beats a 256-tile image
    assert facts.max_audio_seconds == pytest.approx(30.02)
    assert facts.images_per_prompt is None  # vLLM's own default


def test_processor_overrides_in_the_engine_options_win(tmp_path: Path) -> None:
    facts = read_facts(model_dir(tmp_path), {"mm_processor_kwargs": {"max_pixels": 64 * 28 * 28}})
    assert facts is not None and facts.image is not None and facts.image.max_tokens == 64 + 2


def test_a_newer_processor_config_nests_its_parts(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"architectures": [OMNI]}))
    (tmp_path / "processor_config.json").write_text(json.dumps({
        "image_processor": {"size": {"shortest_edge": 3136, "longest_edge": 100 * 28 * 28}, "patch_size": 14},
        "feature_extractor": {"sampling_rate": 16000, "hop_length": 160}}))
    facts = read_facts(tmp_path)
    assert facts is not None and facts.image is not None and facts.image.max_tokens == 100 + 2


def test_a_modality_switched_off_in_the_engine_is_no_capability(tmp_path: Path) -> None:
    facts = read_facts(model_dir(tmp_path), {"limit_mm_per_prompt": {"image": 0, "audio": 1}})
    assert facts is not None and facts.capabilities == ("audio_input",)
    with pytest.raises(MediaError, match="no image parts"):
        facts.image_tokens(64, 64)


@pytest.mark.parametrize(("architecture", "capabilities"), [
    ("Qwen2_5_VLForConditionalGeneration", ("vision",)),
    ("Qwen2AudioForConditionalGeneration", ("audio_input",)),
    ("Qwen2_5OmniForConditionalGeneration", ("vision", "audio_input")),
])
def test_the_architecture_says_which_parts_a_model_takes(tmp_path: Path, architecture: str,
                                                         capabilities: tuple[str, ...]) -> None:
    facts = read_facts(model_dir(tmp_path, architecture))
    assert facts is not None and facts.capabilities == capabilities


def test_a_model_this_module_does_not_know_has_no_facts_rather_than_free_media(tmp_path: Path) -> None:
    assert read_facts(model_dir(tmp_path, "LlamaForCausalLM")) is None
    assert read_facts(tmp_path / "missing") is None
