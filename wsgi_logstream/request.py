"""Reading a request: which format it wants, and whether it is one we serve.

Everything that can be wrong with a request is found here, before any target
runs, and answered with a short ``text/plain`` message and a 4xx status.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any, Iterable
from urllib.parse import parse_qs

from .formats import FORMATS, Format, HtmlFormat, NdjsonFormat, SseFormat, TextFormat

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = [
    "STREAM_HEADERS",
    "BadRequest",
    "choose_format",
    "environ_for_target",
    "error_response",
    "make_format",
    "query_params",
    "reject_body",
]

MAX_QUERY = 4096
MAX_HEADER_BYTES = 16384
MAX_BODY = 1 << 20  # a form that starts an operation, not an upload

#: Sent with every stream: no caching, no proxy buffering, no type sniffing
#: (Chrome holds back the first KiB of text/plain to sniff it otherwise).
STREAM_HEADERS = (
    ("Cache-Control", "no-cache"),
    ("X-Accel-Buffering", "no"),
    ("X-Content-Type-Options", "nosniff"),
    ("Vary", "Accept"),
)

_MEDIA = {
    "text/event-stream": "sse",
    "application/x-ndjson": "ndjson",
    "application/ndjson": "ndjson",
    "text/html": "html",
    "application/xhtml+xml": "html",
    "text/plain": "text",
}


class BadRequest(Exception):
    """A request we answer with ``status`` and a one-line ``message``."""

    def __init__(self, status: str, message: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = list(headers)


def error_response(start_response: StartResponse, error: BadRequest) -> list[bytes]:
    body = (error.message.rstrip("\n") + "\n").encode("utf-8")
    headers = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
        *error.headers,
    ]
    start_response(error.status, headers)
    return [body]


def query_params(environ: WSGIEnvironment) -> dict[str, str]:
    """The query string as single values; a repeated or oversized one is a 4xx."""
    query = environ.get("QUERY_STRING", "")
    if len(query) > MAX_QUERY:
        raise BadRequest("414 URI Too Long", f"query string longer than {MAX_QUERY} bytes")
    size = sum(len(k) + len(str(v)) for k, v in environ.items() if k.startswith("HTTP_"))
    if size > MAX_HEADER_BYTES:
        raise BadRequest("431 Request Header Fields Too Large", f"request headers larger than {MAX_HEADER_BYTES} bytes")
    try:
        parsed = parse_qs(query, keep_blank_values=True, strict_parsing=False, max_num_fields=64)
    except ValueError:
        raise BadRequest("400 Bad Request", "too many query parameters") from None
    params = {}
    for key, values in parsed.items():
        if len(values) > 1 and key in ("format", "since", "token", "probe"):
            raise BadRequest("400 Bad Request", f"query parameter {key!r} given more than once")
        params[key] = values[-1]
    return params


def _accepted(header: str) -> list[tuple[float, int, str]]:
    ranges = []
    for position, item in enumerate(header.split(",")):
        parts = [p.strip() for p in item.split(";")]
        media = parts[0].lower()
        if not media:
            continue
        quality = 1.0
        for param in parts[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
                if not 0.0 <= quality <= 1.0:
                    quality = 0.0
        ranges.append((quality, -position, media))
    return ranges


def choose_format(environ: WSGIEnvironment, params: dict[str, str]) -> str:
    """``?format=`` if given, else the best supported type in ``Accept``, else text."""
    if "format" in params:
        name = params["format"].lower()
        if name not in FORMATS:
            raise BadRequest(
                "400 Bad Request",
                f"unknown format {params['format'][:40]!r}: use one of {', '.join(FORMATS)}",
            )
        return name
    header = environ.get("HTTP_ACCEPT", "").strip()
    if not header:
        return "text"
    ranges = _accepted(header)
    best: tuple[float, int, str] | None = None
    wildcard = 0.0
    for quality, position, media in ranges:
        if media in ("*/*", "text/*"):
            wildcard = max(wildcard, quality)
        served = _MEDIA.get(media)
        if served and quality > 0 and (best is None or (quality, position) > best[:2]):
            best = (quality, position, served)
    if best is not None and best[0] >= wildcard:
        return best[2]
    if wildcard > 0 or not ranges:
        return "text"
    raise BadRequest(
        "406 Not Acceptable",
        "none of the Accept types is served: use text/plain, text/html, text/event-stream or application/x-ndjson",
    )


def make_format(name: str, params: dict[str, str], *, ansi: bool) -> Format:
    if name == "text":
        return TextFormat(ansi=ansi)
    if name == "html":
        return HtmlFormat()
    if name == "sse":
        return SseFormat(detail=params.get("detail") in ("1", "json", "true"))
    return NdjsonFormat()


def reject_body(environ: WSGIEnvironment) -> None:
    """A GET or HEAD that carries a body is a client bug: say so, do not guess."""
    if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
        return
    length = environ.get("CONTENT_LENGTH", "") or "0"
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    try:
        has_body = int(length) > 0
    except ValueError:
        raise BadRequest("400 Bad Request", "invalid Content-Length") from None
    if has_body or chunked:
        raise BadRequest("400 Bad Request", f"a {environ['REQUEST_METHOD']} request must not carry a body")


def allow(methods: tuple[str, ...], environ: dict[str, Any]) -> None:
    method = environ.get("REQUEST_METHOD", "GET")
    if method not in methods:
        raise BadRequest(
            "405 Method Not Allowed",
            f"method {method[:20]} not allowed: use {', '.join(methods)}",
            [("Allow", ", ".join(methods))],
        )


def environ_for_target(environ: WSGIEnvironment) -> dict[str, Any]:
    """A copy of ``environ`` for the target, its body (if any) read now.

    The target runs in another thread, possibly after the response that
    started it: the request's own input stream is no longer safe to read then.
    """
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise BadRequest("400 Bad Request", "invalid Content-Length") from None
    if length > MAX_BODY:
        raise BadRequest("413 Content Too Large", f"request body larger than {MAX_BODY} bytes")
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    copy = dict(environ)
    copy["wsgi.input"] = io.BytesIO(body)
    copy["CONTENT_LENGTH"] = str(len(body))
    return copy
