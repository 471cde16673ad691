"""The random-weight Piper voice: the test voice, and the deeper one benchmarks build for a realistic cost."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from appliance.tiny_models.audio import HOP, PIPER_VOICE, build_piper

TEXT = "A sentence to read aloud."


def spoken(voice_dir: Path) -> np.ndarray:
    from piper import PiperVoice
    from piper.config import SynthesisConfig

    voice = PiperVoice.load(voice_dir / f"{PIPER_VOICE}.onnx")
    [chunk] = list(voice.synthesize(TEXT, SynthesisConfig(speaker_id=0)))
    return chunk.audio_int16_array


@pytest.mark.parametrize(("hidden", "layers"), [(0, 0), (64, 3)])
def test_a_voice_of_any_depth_speaks_one_hop_per_phoneme_and_is_not_silent(
        tmp_path: Path, hidden: int, layers: int) -> None:
    audio = spoken(_built(tmp_path, hidden, layers))
    assert len(audio) % HOP == 0 and len(audio) > 10 * HOP
    assert np.abs(audio).max() > 1000  # a waveform, not near-silence from badly scaled layers


def test_layers_change_the_weights_but_not_the_length(tmp_path: Path) -> None:
    shallow, deep = spoken(_built(tmp_path / "a", 0, 0)), spoken(_built(tmp_path / "b", 64, 3))
    assert len(shallow) == len(deep) and not np.array_equal(shallow, deep)


def _built(where: Path, hidden: int, layers: int) -> Path:
    build_piper(where, hidden=hidden, layers=layers)
    return where
