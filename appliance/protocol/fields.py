"""Pydantic error locations as the field paths a client wrote: ``("body", "messages", 0, "role")`` → ``messages[0].role``.

The one place every surface turns a location into a name (the gateway's
VALIDATION_ERROR details, the workers' ``param``, the catalogue's messages).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from typing import Any

# Where FastAPI says a value came from; the client knows only the field.
SOURCES = frozenset({"body", "query", "path", "form", "header", "cookie"})
# Tags pydantic puts into a location for a union's branch (``str``, ``list[str]``, ``function-after[...]``,
# ``constrained-str``, a model's class name); they name no field.
_UNION_BRANCH = re.compile(r"^(str|int|float|bool|none|constrained-\w+|[a-z-]+\[.*\]|[A-Z]\w*)$")


def field_path(loc: Sequence[Any], tags: Collection[str] = (), empty: str = "body") -> str:
    """The client's name for ``loc``; ``tags`` are a discriminated union's values (skipped after an index)."""
    out = ""
    for index, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        text = str(part)
        after_index = index > 0 and isinstance(loc[index - 1], int)
        # A source leads a longer location; alone it is a body field of that name (rerank's "query").
        source = index == 0 and text in SOURCES and len(loc) > 1
        if source or _UNION_BRANCH.match(text) or (after_index and text in tags):
            continue
        out += f".{text}" if out else text
    return out or empty
