"""A tiny SDXL pipeline for diffusers: random weights, real SDXL architecture, seconds per 1024x1024 image on CPU.

The text encoders follow diffusers' own SDXL test dummies. The VAE has four
levels so that its scale factor is 8 as in real SDXL (with two levels a
1024x1024 latent is 512x512 and one image takes minutes on a CPU), and the UNet
three, attending only at the lowest one, again as real SDXL does.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from appliance.tiny_models.registry import TinyModel

# The seed page's sizes for DALL-E 3 / SDXL; real SDXL works best near one megapixel.
SIZES = ["1024x1024", "1792x1024", "1024x1792"]

_WORDS = (
    "a the cozy reading nook with warm lighting studio ghibli style photo of cat dog on mat sky blue red green "
    "tree house mountain lake sunset city night portrait painting art image picture light dark"
).split()


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte → printable character table, which CLIP's byte-level BPE uses."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def clip_vocab_and_merges() -> tuple[dict[str, int], list[str]]:
    """A CLIP BPE vocabulary: every byte character, its word-final ``</w>`` form, and merges for a few words."""
    chars = list(_bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars]
    merges: list[str] = []
    for word in _WORDS:
        if len(word) < 2:
            continue
        left = word[0]
        for index, char in enumerate(word[1:], start=1):
            right = char + "</w>" if index == len(word) - 1 else char  # `</w>` stays attached to a character
            merges.append(f"{left} {right}")
            left = left + right
            tokens.append(left)
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: index for index, token in enumerate(dict.fromkeys(tokens))}
    return vocab, list(dict.fromkeys(merges))


def build(out: Path, seed: int = 0) -> None:
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    torch.manual_seed(seed)
    vocab, merges = clip_vocab_and_merges()
    # Three levels with attention only at the lowest resolution, as in real SDXL: the test dummies' two-level
    # UNet attends over 64x64 positions at 1024x1024 and takes seconds per step on a CPU.
    unet = UNet2DConditionModel(
        block_out_channels=(32, 32, 64), layers_per_block=1, sample_size=128, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"), norm_num_groups=8,
        attention_head_dim=(2, 4, 8), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 1, 2),
        projection_class_embeddings_input_dim=80,  # 6 time ids x 8 + the pooled text embedding (32)
        cross_attention_dim=64,  # the two text encoders' hidden states side by side (32 + 32)
    )
    vae = AutoencoderKL(
        block_out_channels=[8, 16, 16, 16], in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
        layers_per_block=1, norm_num_groups=8, sample_size=1024,
    )
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, steps_offset=1,
                                       beta_schedule="scaled_linear", timestep_spacing="leading")
    text_config = CLIPTextConfig(
        bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"], pad_token_id=vocab["<|endoftext|>"],
        hidden_size=32, intermediate_size=37, layer_norm_eps=1e-05, num_attention_heads=4, num_hidden_layers=5,
        vocab_size=len(vocab), hidden_act="gelu", projection_dim=32, max_position_embeddings=77,
    )
    text_encoder = CLIPTextModel(text_config)
    text_encoder_2 = CLIPTextModelWithProjection(text_config)
    with tempfile.TemporaryDirectory() as tmp:
        # Written as files and read back, as a real checkpoint's tokenizer is.
        (Path(tmp) / "vocab.json").write_text(json.dumps(vocab))
        (Path(tmp) / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
        tokenizer = CLIPTokenizer(vocab=str(Path(tmp) / "vocab.json"), merges=str(Path(tmp) / "merges.txt"),
                                  model_max_length=77)
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
                                     tokenizer=tokenizer, tokenizer_2=tokenizer, unet=unet, scheduler=scheduler)
    if out.exists():
        shutil.rmtree(out)
    pipe.save_pretrained(out)


def catalogue(path: Path) -> list[dict[str, Any]]:
    return [{
        "slug": "stability/sd-xl",
        "display_name": "Tiny SDXL pipeline (random weights; images are noise)",
        "aliases": ["openai/dall-e-3", "dall-e-3", "dall-e-2"],  # the bare names: what OpenAI's SDK examples send
        "modality": "image",
        "engine": "diffusers",
        "path": str(path),
        # Loaded at start so the seed's first request does not meet a loading model.
        "load": "startup",
        "engine_options": {
            "sizes": SIZES,
            "steps": {"standard": 2, "hd": 4},  # real SDXL: 30 and 50
        },
    }]


TINY = TinyModel(name="sdxl-tiny", version="1", build=build, catalogue=catalogue)
