"""GET /console/…: the console's files, from the package, with a policy that lets the page reach nothing else.

Not in the OpenAPI document: these are a web page's files, not operations of
the API. ``/`` and ``/console`` redirect to ``/console/``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from appliance.gateway.routing import api_router
from appliance.serving.errors import ApiError, ErrorCode

router = api_router(include_in_schema=False)

STATIC = Path(__file__).resolve().parent / "static"
MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
               ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}

# Scripts, styles and connections: this origin only (no inline script, no CDN); generated images and speech come
# back as blob: URLs; the page may not be framed by another site.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
                           "media-src 'self' blob:; connect-src 'self'; font-src 'self'; object-src 'none'; "
                           "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # The files change with each release of the appliance, not while it runs: revalidate, never serve stale.
    "Cache-Control": "no-cache",
}
# Over HTTPS: browsers that have seen the console once never try it over plain HTTP again (two years, as
# Mozilla's TLS guidelines recommend). Never sent over plain HTTP, where it would mean nothing.
HSTS = {"Strict-Transport-Security": "max-age=63072000"}


def _hsts(request: Request) -> dict[str, str]:
    return HSTS if request.url.scheme == "https" else {}


def _files() -> dict[str, Path]:
    """The console's files by name: only these are served (no path ever reaches the file system)."""
    return {path.relative_to(STATIC).as_posix(): path for path in STATIC.rglob("*")
            if path.is_file() and path.suffix in MEDIA_TYPES}


FILES = _files()


def _serve(name: str, request: Request) -> Response:
    path = FILES.get(name)
    if path is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"The console has no file '{name}'.")
    return Response(path.read_bytes(), media_type=MEDIA_TYPES[path.suffix], headers=SECURITY_HEADERS | _hsts(request))


@router.get("/")
@router.get("/console")
async def to_console(request: Request) -> RedirectResponse:
    return RedirectResponse("/console/", status_code=307, headers=_hsts(request))


@router.get("/console/")
async def console_page(request: Request) -> Response:
    return _serve("index.html", request)


@router.get("/console/{name:path}")
async def console_file(name: str, request: Request) -> Response:
    return _serve(name, request)
