"""A tiny omni model: Qwen2.5-Omni's thinker with random weights, taking text, images and audio in one request.

vLLM serves it with the real architecture (``Qwen2_5OmniModel``: the Qwen2.5-VL
vision tower, the Whisper-style audio tower, a Qwen2 text model with M-RoPE)
and the real processor (Qwen2-VL image processor, Whisper feature extractor),
so an image or a sound costs the prompt tokens it costs on the full-size model.
Every attention head is 64 wide (vLLM's CPU attention supports no smaller),
and the text model talks in plain ASCII like the tiny chat model, with the
same tools-aware template and hermes ``<tool_call>`` tokens.
Only the thinker is saved: vLLM drops the talker and token2wav weights anyway.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from appliance.tiny_models import chat
from appliance.tiny_models.registry import TinyModel

CONTEXT_WINDOW = 4096
MAX_OUTPUT_TOKENS = 512
HIDDEN = 128  # text and vision width: two heads of 64
MEL_BINS = 128  # as Qwen2.5-Omni's feature extractor

# Qwen2.5-Omni's names for its media tokens (the processor reads them from the tokenizer).
MEDIA_TOKENS = {
    "audio_token": "<|AUDIO|>", "audio_bos_token": "<|audio_bos|>", "audio_eos_token": "<|audio_eos|>",
    "image_token": "<|IMAGE|>", "video_token": "<|VIDEO|>",
    "vision_bos_token": "<|vision_bos|>", "vision_eos_token": "<|vision_eos|>",
}

# Images: Qwen2-VL's processor resizes to multiples of 28 (patch 14, 2×2 merge) within these pixel counts.
PATCH_SIZE, MERGE_SIZE, TEMPORAL_PATCH_SIZE = 14, 2, 2
MIN_PIXELS = 4 * 28 * 28
MAX_PIXELS = 1024 * 28 * 28  # at most 1024 tokens per image
# Audio: 16 kHz, 10 ms mel frames, Whisper's 30 s window (vLLM sizes its encoder cache for one; a longer clip
# passes while its tokens fit in max_num_batched_tokens).
SAMPLING_RATE, HOP_LENGTH, CHUNK_SECONDS = 16000, 160, 30

# The tiny chat model's template, with media parts written as Qwen2.5-Omni's placeholders. vLLM sees the loop
# over the content parts and hands them over as {"type": "image"} / {"type": "audio"}.
MEDIA_PARTS = (
    "{%- elif part.type == 'image' or part.type == 'image_url' -%}<|vision_bos|><|IMAGE|><|vision_eos|>"
    "{%- elif part.type == 'audio' or part.type == 'input_audio' or part.type == 'audio_url' -%}"
    "<|audio_bos|><|AUDIO|><|audio_eos|>"
    "{%- elif part.type == 'video' or part.type == 'video_url' -%}<|vision_bos|><|VIDEO|><|vision_eos|>"
)
TEXT_PART = "{%- if part.type == 'text' -%}{{ part.text }}"
CHAT_TEMPLATE = chat.CHAT_TEMPLATE.replace(TEXT_PART, TEXT_PART + MEDIA_PARTS, 1)
if CHAT_TEMPLATE == chat.CHAT_TEMPLATE:
    raise RuntimeError("the tiny chat template no longer has the text part that media parts extend")


def _tokenizer() -> Any:
    tokenizer = chat.build_tokenizer(extra_specials=list(MEDIA_TOKENS.values()), chat_template=CHAT_TEMPLATE,
                                     context_window=CONTEXT_WINDOW)
    # The named media tokens become attributes (tokenizer.image_token …) and are saved in tokenizer_config.json.
    tokenizer.init_kwargs.update(MEDIA_TOKENS)
    for name, token in MEDIA_TOKENS.items():
        setattr(tokenizer, name, token)
    return tokenizer


def _thinker_config(tokenizer: Any) -> dict[str, Any]:
    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in MEDIA_TOKENS.items()}
    end_of_text = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    return {
        "model_type": "qwen2_5_omni_thinker",
        "text_config": {
            "model_type": "qwen2_5_omni_text", "vocab_size": len(tokenizer), "hidden_size": HIDDEN,
            "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 2,
            "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "tie_word_embeddings": False,
            # M-RoPE: the three sections (time, height, width) split the 32 rotary pairs of a 64-wide head.
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [8, 12, 12]},
            "use_sliding_window": False, "bos_token_id": end_of_text, "eos_token_id": stop_token_ids(tokenizer),
            "pad_token_id": end_of_text, "dtype": "float32",
        },
        "vision_config": {
            "model_type": "qwen2_5_omni_vision_encoder", "depth": 2, "hidden_size": HIDDEN, "num_heads": 2,
            "intermediate_size": 256, "out_hidden_size": HIDDEN, "in_channels": 3, "patch_size": PATCH_SIZE,
            "spatial_merge_size": MERGE_SIZE, "temporal_patch_size": TEMPORAL_PATCH_SIZE, "window_size": 112,
            "fullatt_block_indexes": [1], "hidden_act": "silu",
        },
        "audio_config": {
            "model_type": "qwen2_5_omni_audio_encoder", "num_mel_bins": MEL_BINS, "encoder_layers": 2,
            "encoder_attention_heads": 2, "encoder_ffn_dim": 256, "d_model": HIDDEN, "output_dim": HIDDEN,
            "max_source_positions": 1500, "n_window": 100,
        },
        "audio_token_index": ids["audio_token"], "image_token_index": ids["image_token"],
        "video_token_index": ids["video_token"], "audio_start_token_id": ids["audio_bos_token"],
        "audio_end_token_id": ids["audio_eos_token"], "vision_start_token_id": ids["vision_bos_token"],
        "vision_end_token_id": ids["vision_eos_token"],
        "user_token_id": tokenizer.encode("user")[0],  # unused by vLLM and transformers
        "position_id_per_seconds": 25, "seconds_per_chunk": 2, "dtype": "float32",
    }


def stop_token_ids(tokenizer: Any) -> list[int]:
    return [tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")]


def preprocessor_config() -> dict[str, Any]:
    """Qwen2.5-Omni's preprocessor_config.json (image processor and feature extractor in one), tiny limits."""
    return {
        "processor_class": "Qwen2_5OmniProcessor",
        "image_processor_type": "Qwen2VLImageProcessor",
        "do_resize": True, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "do_convert_rgb": True, "resample": 3,
        "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
        "min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS,
        "size": {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS},
        "patch_size": PATCH_SIZE, "merge_size": MERGE_SIZE, "temporal_patch_size": TEMPORAL_PATCH_SIZE,
        "feature_extractor_type": "WhisperFeatureExtractor",
        "feature_size": MEL_BINS, "sampling_rate": SAMPLING_RATE, "hop_length": HOP_LENGTH, "n_fft": 400,
        "chunk_length": CHUNK_SECONDS, "n_samples": CHUNK_SECONDS * SAMPLING_RATE,
        "nb_max_frames": CHUNK_SECONDS * SAMPLING_RATE // HOP_LENGTH,
        "padding_side": "right", "padding_value": 0.0, "return_attention_mask": True, "dither": 0.0,
    }


def build(out: Path, seed: int = 0) -> None:
    import tempfile

    import torch
    from safetensors.torch import load_file, save_file
    from transformers import GenerationConfig
    from transformers.models.qwen2_5_omni import Qwen2_5OmniConfig, Qwen2_5OmniThinkerForConditionalGeneration

    torch.manual_seed(seed)
    tokenizer = _tokenizer()
    # The talker (speech out) is never built; its vocabulary only has to cover its default token ids, or every load
    # of the config warns about them.
    config = Qwen2_5OmniConfig(thinker_config=_thinker_config(tokenizer), talker_config={"vocab_size": 152064},
                               enable_audio_output=False)
    config.architectures = ["Qwen2_5OmniModel"]
    thinker = Qwen2_5OmniThinkerForConditionalGeneration(config.thinker_config).eval()
    markup = set(tokenizer.convert_tokens_to_ids(chat.SPECIALS + chat.TOOL_TOKENS + list(MEDIA_TOKENS.values())))
    # Whitespace-only tokens too: these random weights favour them, and a forced tool call's grammar allows
    # whitespace after every JSON value, so the call would never close.
    chat.mute_tokens(thinker.model.language_model, thinker.lm_head,
                     [i for i in range(len(tokenizer)) if i in markup or not _plain_words(tokenizer.decode([i]))])
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    with _quiet_transformers():  # saving diffs against a default config, whose talker warns about its token ids
        config.save_pretrained(out)
    with tempfile.TemporaryDirectory() as scratch:
        # save_pretrained writes the checkpoint's own weight names; the full model keeps the thinker's under "thinker.".
        thinker.save_pretrained(scratch)
        weights = load_file(Path(scratch) / "model.safetensors")
    save_file({f"thinker.{name}": tensor for name, tensor in weights.items()}, out / "model.safetensors",
              metadata={"format": "pt"})
    tokenizer.save_pretrained(out)
    (out / "preprocessor_config.json").write_text(json.dumps(preprocessor_config(), indent=2) + "\n")
    stops = stop_token_ids(tokenizer)
    GenerationConfig(eos_token_id=stops, bos_token_id=stops[1], pad_token_id=stops[1]).save_pretrained(out)
    chat.make_loadable_by_older_transformers(out, CHAT_TEMPLATE)


def _plain_words(piece: str) -> bool:
    return chat.plain_text(piece) and not piece.isspace()


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    from transformers.utils import logging

    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)


def catalogue(path: Path) -> list[dict[str, Any]]:
    return [{
        "slug": "scailabs/poolnoodle-omni",
        "display_name": "Tiny omni model on vLLM: text, images and audio in (random weights)",
        "modality": "chat",
        "engine": "vllm",
        "load": "startup",
        "path": str(path),
        "context_window": CONTEXT_WINDOW,
        "max_output_tokens": MAX_OUTPUT_TOKENS,
        "capabilities": ["vision", "audio_input", "tools"],
        # max_num_batched_tokens is vLLM's CPU default, stated so that engines/multimodal.py knows the largest
        # media item (2048 tokens: 81 s of audio); no video (the gateway takes none).
        "engine_options": {"dtype": "float32", "max_model_len": CONTEXT_WINDOW, "enforce_eager": True,
                           "tool_call_parser": "hermes", "tool_strict_level": "parameter",
                           "cpu_kvcache_space_gb": 1, "max_num_batched_tokens": 2048,
                           "limit_mm_per_prompt": {"image": 4, "audio": 2, "video": 0}},
    }]


TINY = TinyModel(name="omni-qwen2.5", version="2", build=build, catalogue=catalogue)
