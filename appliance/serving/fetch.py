"""Fetching a URL for a client (a batch's input file; media to come), only from the hosts the operator allows.

Every hop is checked, redirects included: a redirect to a host not on the list
is refused, never followed, so an allowed server cannot make the appliance
reach into the rest of the LAN for a client (SSRF).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from urllib.parse import urljoin, urlsplit

import aiohttp

from appliance.serving.errors import ApiError, ErrorCode, validation_error

MAX_REDIRECTS = 5
REDIRECTS = frozenset({301, 302, 303, 307, 308})
CHUNK = 1024 * 1024


def check_allowed(url: str, allow: Collection[str], field: str, setting: str) -> None:
    """Refuse ``url`` unless it is http(s) to a host in ``allow`` (named by the ``setting`` that lists them)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise validation_error(field, f"'{url[:200]}' is not an http(s) URL")
    if parts.hostname.lower() not in {host.lower() for host in allow}:
        raise validation_error(field, f"the host '{parts.hostname}' is not in this appliance's {setting} setting")


async def fetch_allowed(url: str, allow: Collection[str], *, field: str, setting: str, max_bytes: int,
                        timeout_s: float, sink: Callable[[bytes], Awaitable[object]]) -> None:
    """GET ``url`` (and the redirects it leads to, each on ``allow``), handing its body to ``sink`` chunk by
    chunk; a VALIDATION_ERROR naming ``field`` for a refused host, a failed fetch or too many redirects, and
    PAYLOAD_TOO_LARGE past ``max_bytes``."""
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for _hop in range(MAX_REDIRECTS + 1):
                check_allowed(url, allow, field, setting)
                async with session.get(url, allow_redirects=False) as response:
                    if response.status in REDIRECTS and response.headers.get("Location"):
                        url = urljoin(url, response.headers["Location"])
                        continue
                    if response.status != 200:
                        raise validation_error(field, f"fetching it answered HTTP {response.status}")
                    seen = 0
                    async for chunk in response.content.iter_chunked(CHUNK):
                        seen += len(chunk)
                        if seen > max_bytes:
                            raise ApiError(ErrorCode.PAYLOAD_TOO_LARGE, f"{field}: the file is over {max_bytes} "
                                                                        "bytes.")
                        await sink(chunk)
                    return
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise validation_error(field, f"could not be fetched ({type(exc).__name__})") from None
    raise validation_error(field, f"fetching it was redirected more than {MAX_REDIRECTS} times")
