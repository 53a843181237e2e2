"""Reading a request, once: its method, format, resume point and options.

Everything that can be wrong with a request is found here, before any target
runs, and raised as an :class:`~wsgi_logstream.errors.HttpError` (a short
``text/plain`` message and a 4xx status). :func:`parse_stream_request` is the
one parser that both a plain stream and a job's stream use.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping
from urllib.parse import parse_qs

from .assets import ASSET_PREFIX, asset_prefix
from .errors import HttpError
from .filters import LineFilter, parse_filter
from .formats import FORMATS, Format, HtmlFormat, NdjsonFormat, SseFormat, TextFormat

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

__all__ = [
    "STREAM_HEADERS",
    "StreamRequest",
    "allow",
    "choose_format",
    "choose_media",
    "environ_for_target",
    "is_probe",
    "parse_stream_request",
    "query_params",
    "reject_body",
]

MAX_QUERY = 4096
MAX_HEADER_BYTES = 16384
MAX_BODY = 1 << 20  # a form that starts an operation, not an upload

#: Sent with every stream: no caching, no proxy buffering, no type sniffing
#: (Chrome holds back the first KiB of text/plain to sniff it otherwise).
#: ``no-store`` rather than ``no-cache``: a log may carry secrets, and no
#: cache (the browser's disk, a proxy) should keep a copy of one.
STREAM_HEADERS = (
    ("Cache-Control", "no-store"),
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


def query_params(environ: WSGIEnvironment) -> dict[str, str]:
    """The query string as single values; a repeated or oversized one is a 4xx."""
    query = environ.get("QUERY_STRING", "")
    if len(query) > MAX_QUERY:
        raise HttpError(414, f"query string longer than {MAX_QUERY} bytes")
    size = sum(len(k) + len(str(v)) for k, v in environ.items() if k.startswith("HTTP_"))
    if size > MAX_HEADER_BYTES:
        raise HttpError(431, f"request headers larger than {MAX_HEADER_BYTES} bytes")
    try:
        parsed = parse_qs(query, keep_blank_values=True, strict_parsing=False, max_num_fields=64)
    except ValueError:
        raise HttpError(400, "too many query parameters") from None
    params = {}
    for key, values in parsed.items():
        if len(values) > 1 and key in ("format", "since", "token", "probe", "level", "grep"):
            raise HttpError(400, f"query parameter {key!r} given more than once")
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
            raise HttpError(
                400,
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
    raise HttpError(
        406,
        "none of the Accept types is served: use text/plain, text/html, text/event-stream or application/x-ndjson",
    )


def reject_body(environ: WSGIEnvironment) -> None:
    """A GET or HEAD that carries a body is a client bug: say so, do not guess."""
    if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
        return
    length = environ.get("CONTENT_LENGTH", "") or "0"
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    try:
        has_body = int(length) > 0
    except ValueError:
        raise HttpError(400, "invalid Content-Length") from None
    if has_body or chunked:
        raise HttpError(400, f"a {environ['REQUEST_METHOD']} request must not carry a body")


def allow(methods: tuple[str, ...], environ: dict[str, Any]) -> None:
    method = environ.get("REQUEST_METHOD", "GET")
    if method not in methods:
        raise HttpError(
            405,
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
        raise HttpError(400, "invalid Content-Length") from None
    if length > MAX_BODY:
        raise HttpError(413, f"request body larger than {MAX_BODY} bytes")
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    copy = dict(environ)
    copy["wsgi.input"] = io.BytesIO(body)
    copy["CONTENT_LENGTH"] = str(len(body))
    return copy


def choose_media(environ: WSGIEnvironment, offered: Mapping[str, str], default: str) -> str:
    """The best of ``offered`` (media type -> name) for the request's ``Accept``, honouring q-values.

    ``default`` when ``Accept`` is absent, empty or only wildcards.
    """
    header = environ.get("HTTP_ACCEPT", "").strip()
    best: tuple[float, int, str] | None = None
    for quality, position, media in _accepted(header):
        name = offered.get(media)
        if name and quality > 0 and (best is None or (quality, position) > best[:2]):
            best = (quality, position, name)
    return default if best is None else best[2]


@dataclass(frozen=True)
class StreamRequest:
    """A stream request, parsed once: what every stream (plain or job) needs to know."""

    method: str
    params: dict[str, str]
    format: str
    detail: bool
    #: The ``Last-Event-ID`` header of an SSE request (EventSource reconnecting), else None.
    last_event_id: str | None
    #: The mount point's ``_assets/`` relative to the requested page (the HTML page links its script and style).
    assets: str = ASSET_PREFIX
    #: ``?level=`` and ``?grep=`` (:mod:`wsgi_logstream.filters`), applied to replay and live lines alike.
    filter: LineFilter | None = None
    #: ``?download=1``: the response is a file to save (``Content-Disposition: attachment``).
    download: bool = False

    @property
    def head_only(self) -> bool:
        return self.method == "HEAD"

    def resume_point(self, newest: int) -> int:
        """The last sequence number the client already has (0: none), at most ``newest``.

        EventSource reconnects to its original URL, ``?since=`` included, and
        adds ``Last-Event-ID``: the header is the newer news.
        """
        value = self.last_event_id if self.last_event_id is not None else self.params.get("since")
        if value is None or value == "":
            return 0
        if not (value.isascii() and value.isdigit()) or len(value) > 18:
            raise HttpError(400, "since (or Last-Event-ID) must be a whole number >= 0")
        since = int(value)
        if since > newest:
            raise HttpError(400, f"since={since} is beyond the newest event of this log ({newest})")
        return since

    def make_format(self, *, ansi: bool, resumable: bool = False, since: int = 0, actions: str = "") -> Format:
        """The encoder this request asked for (``actions``: escaped markup for an HTML page's header)."""
        if self.format == "text":
            return TextFormat(ansi=ansi)
        if self.format == "html":
            return HtmlFormat(resumable=resumable, assets=self.assets, actions=actions)
        if self.format == "sse":
            return SseFormat(detail=self.detail, last_id=since)
        return NdjsonFormat()


def is_probe(params: Mapping[str, str]) -> bool:
    """``?probe=1``: the buffering self-check, answered instead of the stream."""
    return params.get("probe") == "1"


def parse_stream_request(environ: WSGIEnvironment, methods: tuple[str, ...]) -> StreamRequest:
    """Method, query, format, body and ``Last-Event-ID`` of a stream request, checked."""
    allow(methods, environ)
    params = query_params(environ)
    name = choose_format(environ, params)
    reject_body(environ)
    last_event_id = environ.get("HTTP_LAST_EVENT_ID") if name == "sse" else None
    return StreamRequest(
        method=environ.get("REQUEST_METHOD", "GET"),
        params=params,
        format=name,
        detail=params.get("detail") in ("1", "json", "true"),
        last_event_id=last_event_id,
        assets=asset_prefix(environ),
        filter=parse_filter(params),
        download=params.get("download") == "1",
    )
