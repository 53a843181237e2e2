"""The probe: a response that sends timed lines, to find what buffers a stream.

A log stream is only live if every hop between the WSGI app and the browser
passes each chunk on when it gets it. The probe is a WSGI app that answers with
``lines`` lines, one every ``interval`` seconds, each carrying the server's
clock when it was sent (the grammar is :mod:`wsgi_logstream.probe_lines`, shared with the reader)::

    probe start sent=1718000000.000100 lines=8 interval=0.25 format=text
    probe 1/8 sent=1718000000.000200 ..........
    probe 2/8 sent=1718000000.250400 ..........
    ...
    probe end

dressed as a real stream of the asked format, so every hop treats it as it
treats the page: the same content type and headers (``X-Accel-Buffering: no``
and the rest), and the same first writes (the format's head, cut where a
stream cuts it, :data:`wsgi_logstream.response.FIRST_WRITE` bytes, since
Caddy's ``encode`` decides on the first write whether to compress and hold a
response); the probe's lines follow, framed as the format frames a record. ``wsgi-logstream check URL`` reads it and
compares when each line arrived with when it was sent.

Query parameters (bad values are a ``400``): ``lines`` (8, 1 to 1000),
``interval`` (0.25 s, 0.01 to 5), ``size`` (about 100 bytes per line, up to
65536), ``format`` (``text``, ``html``, ``sse`` or ``ndjson``; else from
``Accept`` as for a stream). A probe lasts at most 30 seconds and sends at
most 1 MiB (``lines * size``); at most 4 run at once in a process (the next
gets ``503`` with ``Retry-After``), so the probe cannot be turned into a
cheap way to make the server send a lot.

Serve it on its own (``application = probe_app``) or answer ``?probe=1`` on a
stream with it.
"""

from __future__ import annotations

import html
import json
import threading
import time
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

from .errors import HttpError, error_response
from .formats import Format, HtmlFormat, NdjsonFormat, SseFormat, TextFormat
from .probe_lines import END, numbered_line, start_line
from .request import STREAM_HEADERS, choose_format, query_params
from .response import FIRST_GAP, split_head

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["MAX_BYTES", "MAX_RUNNING", "MAX_SECONDS", "Probe", "probe_app"]

MAX_SECONDS = 30.0
MAX_BYTES = 1 << 20  # lines * size: a probe is a few timed lines, not a way to make a server send 65 MB
MAX_RUNNING = 4  # probes at once in a process; past it 503 with Retry-After
DEFAULT_LINES = 8
DEFAULT_INTERVAL = 0.25
DEFAULT_SIZE = 100
MAX_SIZE = 65536

# Probes in this process now: a limit of their own, apart from the streams' max_concurrent (a probe runs nothing).
_RUNNING = threading.BoundedSemaphore(MAX_RUNNING)

# The stream formats, for their media type, their headers and their head: the probe is dressed as a stream.
_FORMATS: dict[str, Format] = {
    "text": TextFormat(),
    "html": HtmlFormat(resumable=True),
    "sse": SseFormat(),
    "ndjson": NdjsonFormat(),
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

    def __init__(
        self, lines: int, interval: float, size: int, fmt: str, *, release: Callable[[], None] | None = None
    ) -> None:
        self.lines = lines
        self.interval = interval
        self.size = size
        self.format = fmt
        self._closed = False
        self._release = release  # gives back the probe's place among the MAX_RUNNING, once

    def __iter__(self) -> Iterator[bytes]:
        # The real stream's first writes: the format's head for a stream titled "probe",
        # cut where a stream cuts it (FIRST_WRITE), so a hop that decides on the first
        # write (Caddy's encode) treats the probe as it treats the page.
        first, rest = split_head(_FORMATS[self.format].head("probe", time.time()))
        yield first
        time.sleep(FIRST_GAP)  # as a stream pauses before its second write
        if rest:
            yield rest
        yield self._frame(start_line(time.time(), self.lines, self.interval, self.format), head=True)
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
            yield self._frame(numbered_line(number, self.lines, time.time(), self.size))
        yield self._frame(END, tail=True)

    def _frame(self, text: str, *, head: bool = False, tail: bool = False) -> bytes:
        if self.format == "sse":
            return (f": {text}\n\n" if head or tail else f"data: {text}\n\n").encode()
        if self.format == "ndjson":
            return (json.dumps({"event": "probe", "line": text}) + "\n").encode()
        if self.format == "html":
            line = html.escape(text) + "\n"  # inside the page head's <pre>, as a record's line is
            return (line + "</pre></div></main></body></html>\n" if tail else line).encode()
        return (text + "\n").encode()

    def close(self) -> None:
        self._closed = True
        release, self._release = self._release, None
        if release is not None:
            release()


def _headers(fmt: str) -> list[tuple[str, str]]:
    """The headers a stream of this format sends (as ``pipeline.open_stream`` sends them)."""
    return [("Content-Type", _FORMATS[fmt].media_type), *STREAM_HEADERS, *_FORMATS[fmt].headers]


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
        if lines * size > MAX_BYTES:
            raise HttpError(400, f"a probe sends at most {MAX_BYTES} bytes: lower lines or size")
        if environ.get("REQUEST_METHOD") == "HEAD":
            start_response("200 OK", _headers(fmt))
            return []
        if not _RUNNING.acquire(blocking=False):
            raise HttpError(
                503, f"{MAX_RUNNING} probes are running already: try again in a few seconds", [("Retry-After", "5")]
            )
    except HttpError as error:
        return error_response(start_response, error)
    probe = Probe(lines, interval, size, fmt, release=_RUNNING.release)
    try:
        start_response("200 OK", _headers(fmt))
    except BaseException:
        probe.close()
        raise
    return probe
