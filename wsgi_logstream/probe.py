"""The probe: a response that sends timed lines, to find what buffers a stream.

A log stream is only live if every hop between the WSGI app and the browser
passes each chunk on when it gets it. The probe is a WSGI app that answers with
``lines`` lines, one every ``interval`` seconds, each carrying the server's
clock when it was sent::

    probe start sent=1718000000.000100 lines=8 interval=0.25 format=text
    probe 1/8 sent=1718000000.000200 ..........
    probe 2/8 sent=1718000000.250400 ..........
    ...
    probe end

with the same headers a stream sends (``X-Accel-Buffering: no`` and the
rest), in any of the stream formats, so it meets the same treatment from
proxies and compression middleware. ``wsgi-logstream check URL`` reads it and
compares when each line arrived with when it was sent.

Query parameters (bad values are a ``400``): ``lines`` (8, 1 to 1000),
``interval`` (0.25 s, 0.01 to 5), ``size`` (about 100 bytes per line, up to
65536), ``format`` (``text``, ``html``, ``sse`` or ``ndjson``; else from
``Accept`` as for a stream). A probe lasts at most 30 seconds.

Serve it on its own (``application = probe_app``) or answer ``?probe=1`` on a
stream with it.
"""

from __future__ import annotations

import html
import json
import time
from typing import TYPE_CHECKING, Iterable, Iterator

from .errors import HttpError, error_response
from .request import STREAM_HEADERS, choose_format, query_params

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["MAX_SECONDS", "Probe", "probe_app"]

MAX_SECONDS = 30.0
DEFAULT_LINES = 8
DEFAULT_INTERVAL = 0.25
DEFAULT_SIZE = 100
MAX_SIZE = 65536

_MEDIA = {
    "text": "text/plain; charset=utf-8",
    "html": "text/html; charset=utf-8",
    "sse": "text/event-stream",
    "ndjson": "application/x-ndjson",
}


def _number(params: dict[str, str], name: str, default: float, low: float, high: float, *, integer: bool) -> float:
    raw = params.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        raise HttpError(400, f"probe {name} must be a number, got {raw[:20]!r}") from None
    if not low <= value <= high:
        raise HttpError(400, f"probe {name} must be between {low:g} and {high:g}, got {raw[:20]!r}")
    return value


class Probe:
    """The probe's body: an iterable that sleeps between lines, in the server's thread.

    Each line is one chunk and is stamped when it is handed to the server, so
    a hop that holds chunks shows up as lines that arrive later than their stamp.
    """

    def __init__(self, lines: int, interval: float, size: int, fmt: str) -> None:
        self.lines = lines
        self.interval = interval
        self.size = size
        self.format = fmt
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        yield self._frame(
            f"probe start sent={time.time():.6f} lines={self.lines} interval={self.interval:g} format={self.format}",
            head=True,
        )
        next_at = time.monotonic()
        for number in range(1, self.lines + 1):
            if number > 1:
                # Keep to the schedule even if a send blocked, so gaps mean the path, not the probe.
                next_at += self.interval
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            if self._closed:
                return
            text = f"probe {number}/{self.lines} sent={time.time():.6f} "
            yield self._frame(text + "." * max(self.size - len(text) - 1, 0))
        yield self._frame("probe end", tail=True)

    def _frame(self, text: str, *, head: bool = False, tail: bool = False) -> bytes:
        if self.format == "sse":
            return (f": {text}\n\n" if head or tail else f"data: {text}\n\n").encode()
        if self.format == "ndjson":
            return (json.dumps({"event": "probe", "line": text}) + "\n").encode()
        if self.format == "html":
            line = html.escape(text) + "\n"
            if head:
                return (
                    "<!doctype html><html lang=en><head><meta charset=utf-8><title>probe</title></head>"
                    f"<body><pre>{line}"
                ).encode()
            return (line + "</pre></body></html>\n" if tail else line).encode()
        return (text + "\n").encode()

    def close(self) -> None:
        self._closed = True


def probe_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """WSGI app: the probe, configured by the query string (see the module docstring)."""
    try:
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            raise HttpError(405, "the probe answers GET only", [("Allow", "GET, HEAD")])
        params = query_params(environ)
        fmt = choose_format(environ, params)
        lines = int(_number(params, "lines", DEFAULT_LINES, 1, 1000, integer=True))
        interval = _number(params, "interval", DEFAULT_INTERVAL, 0.01, 5.0, integer=False)
        size = int(_number(params, "size", DEFAULT_SIZE, 1, MAX_SIZE, integer=True))
        if (lines - 1) * interval > MAX_SECONDS:
            raise HttpError(400, f"a probe lasts at most {MAX_SECONDS:g}s: lower lines or interval")
    except HttpError as error:
        return error_response(start_response, error)
    start_response("200 OK", [("Content-Type", _MEDIA[fmt]), *STREAM_HEADERS])
    if environ.get("REQUEST_METHOD") == "HEAD":
        return []
    return Probe(lines, interval, size, fmt)
