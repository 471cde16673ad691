"""Identifiers of hot-path records (requests, usage rows): unique, cheap, not secret.

``secrets.token_hex`` reads the kernel's random source on every call, which
was 6 % of the gateway's CPU per relayed request. These ids name things but
grant nothing, so a generator seeded once from that source serves them.
"""

from __future__ import annotations

import random

_random = random.Random()  # seeded from os.urandom: processes (and gateways sharing a DB) draw apart


def new_id(prefix: str, hex_digits: int = 24) -> str:
    """``prefix`` + ``hex_digits`` random hex digits, e.g. ``req_3f9c…``."""
    return f"{prefix}{_random.getrandbits(hex_digits * 4):0{hex_digits}x}"
