"""Test images made in code with Pillow (no files downloaded), and the data: URLs a client sends them in."""

from __future__ import annotations

import base64
import io

from PIL import Image


def picture(width: int, height: int, fmt: str = "PNG", seed: int = 0) -> bytes:
    """An image with some structure (a gradient per seed), so that no two sizes or seeds are the same bytes."""
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    image = Image.merge("RGB", (image.getchannel(0), image.getchannel(0).rotate(90 * (seed % 4)),
                                Image.new("L", (width, height), (seed * 37) % 256)))
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


def data_url(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"
