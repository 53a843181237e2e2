"""``wsgi-logstream check URL``: does a stream arrive live, and if not, which hop holds it?

A stream can be perfect at the app and still reach the browser all at once at
the end: a reverse proxy that buffers responses, a compression middleware, a
CDN. ``check`` asks the URL for the probe (``?probe=1``, see
:mod:`wsgi_logstream.probe`): lines sent ``interval`` seconds apart, each
stamped with the server's clock. It reads them like a browser would (asking
for gzip, decoding as it goes) and compares, for each line, when it arrived
with when it was sent. Clocks need not agree: what counts is how much later
than the *quickest* line each one arrived (its "held" time).

It then names the pattern (live; all at once at the end; the start held back;
bursts of about N bytes) and, from the response headers (``Server``, ``Via``,
``Content-Encoding``, CDN headers, and whether ``X-Accel-Buffering: no``
survived the trip), the likely culprit and its fix.

Exit status: 0 streams, 1 buffers, 2 could not tell (no answer, not a probe, error).
"""

from __future__ import annotations

import http.client
import os
import re
import socket
import ssl
import sys
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import TextIO
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from . import __version__

__all__ = ["Arrival", "Culprit", "Reading", "Verdict", "analyse", "culprits", "probe_url", "read_probe", "run_check"]

_LINE = re.compile(rb"probe (\d+)/(\d+) sent=(\d+(?:\.\d+)?)")
_START = re.compile(rb"probe start sent=(\d+(?:\.\d+)?)")
_END = b"probe end"
_PROBE_PARAMS = ("probe", "lines", "interval", "size", "format", "token")


@dataclass
class Arrival:
    """One probe line: its number, when the server sent it, when it arrived here."""

    number: int
    sent: float  # the server's clock
    arrived: float  # this machine's clock
    received: int  # body bytes (decoded) received up to the end of this line


@dataclass
class Reading:
    """Everything observed while reading the probe."""

    url: str
    expected: int
    interval: float
    status: int = 0
    reason: str = ""
    version: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    requested: float = 0.0
    headers_at: float | None = None
    start_arrived: float | None = None
    lines: list[Arrival] = field(default_factory=list)
    ended: bool = False
    finished: float = 0.0
    error: str | None = None
    body_start: bytes = b""
    received: int = 0  # decoded body bytes, by line

    def header(self, name: str) -> str | None:
        name = name.lower()
        values = [value for key, value in self.headers if key.lower() == name]
        return ", ".join(values) if values else None


@dataclass
class Culprit:
    name: str
    evidence: str
    fix: str


@dataclass
class Verdict:
    streams: bool
    pattern: str  # "live", "end", "start", "bursts"
    summary: str
    held: list[float]
    bursts: list[int]
    culprits: list[Culprit]


def probe_url(url: str, *, lines: int, interval: float, size: int, fmt: str) -> tuple[str, str | None]:
    """The probe's URL for the stream at ``url``, and a ``?token=`` it carried (sent as a header instead)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    token = next((value for key, value in pairs if key == "token"), None)
    pairs = [(key, value) for key, value in pairs if key not in _PROBE_PARAMS]
    pairs += [("probe", "1"), ("lines", str(lines)), ("interval", f"{interval:g}"), ("size", str(size))]
    pairs.append(("format", fmt))
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", urlencode(pairs), "")), token


class _Inflater:
    """Decodes gzip or deflate (zlib-wrapped or raw: servers send both) as it arrives."""

    def __init__(self, encoding: str) -> None:
        self._decided = encoding != "deflate"  # for deflate, the first chunk tells zlib-wrapped from raw
        wbits = 16 + zlib.MAX_WBITS if encoding in ("gzip", "x-gzip") else zlib.MAX_WBITS
        self._decoder = zlib.decompressobj(wbits)

    def decompress(self, data: bytes) -> bytes:
        if self._decided:
            return self._decoder.decompress(data)
        self._decided = True
        try:
            return self._decoder.decompress(data)
        except zlib.error:
            self._decoder = zlib.decompressobj(-zlib.MAX_WBITS)
            return self._decoder.decompress(data)


def read_probe(
    url: str,
    *,
    expected: int,
    interval: float,
    timeout: float,
    token: str | None = None,
    insecure: bool = False,
    into: Reading | None = None,
) -> Reading:
    """GET the probe at ``url`` (from :func:`probe_url`) and time each line's arrival.

    ``into``: a :class:`Reading` to fill as lines arrive (another thread may watch it).
    """
    reading = into or Reading(url=url, expected=expected, interval=interval)
    parts = urlsplit(url)
    deadline = time.monotonic() + timeout
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        context = ssl.create_default_context()
        if insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        connection = http.client.HTTPSConnection(parts.hostname or "", parts.port, timeout=timeout, context=context)
    else:
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    headers = {
        "Accept": "*/*",
        "Accept-Encoding": "gzip, deflate",  # what a browser asks for (less br), so compressors wake up
        "User-Agent": f"wsgi-logstream-check/{__version__}",
    }
    if token:
        headers["Authorization"] = f"Bearer {token}"
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    try:
        reading.requested = time.time()
        connection.request("GET", target, headers=headers)
        response = connection.getresponse()
        reading.headers_at = time.time()
        reading.status, reading.reason = response.status, response.reason
        reading.version = "HTTP/1.1" if response.version == 11 else "HTTP/1.0"
        reading.headers = list(response.getheaders())
        if response.status != 200:
            reading.body_start = response.read(2000)
            return reading
        encoding = (response.getheader("Content-Encoding") or "identity").strip().lower()
        if encoding not in ("identity", "gzip", "x-gzip", "deflate"):
            reading.error = f"the response is encoded with {encoding!r}, which this check cannot decode"
            return reading
        inflater = None if encoding == "identity" else _Inflater(encoding)
        pending = b""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout()
            if connection.sock is not None:
                connection.sock.settimeout(remaining)
            chunk = response.read1(65536)
            now = time.time()
            if not chunk:
                break
            data = inflater.decompress(chunk) if inflater is not None else chunk
            if len(reading.body_start) < 2000:
                reading.body_start += data[: 2000 - len(reading.body_start)]
            pending += data
            *complete, pending = pending.split(b"\n")
            for line in complete:
                _parse_line(reading, line, now)
            reading.finished = now
            if reading.ended or (complete and reading.start_arrived is None):
                break  # the end, or a first line that is not the probe's: not a probe, stop here
        if pending:
            _parse_line(reading, pending, time.time())
    except socket.timeout:
        reading.error = f"timed out after {timeout:g}s"
    except (OSError, http.client.HTTPException, zlib.error) as exc:
        reading.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    finally:
        reading.finished = reading.finished or time.time()
        connection.close()
    return reading


def _parse_line(reading: Reading, line: bytes, now: float) -> None:
    reading.received += len(line) + 1
    match = _LINE.search(line)
    if match:
        reading.lines.append(Arrival(int(match.group(1)), float(match.group(3)), now, reading.received))
        return
    if reading.start_arrived is None and _START.search(line):
        reading.start_arrived = now
    elif _END in line:
        reading.ended = True


def analyse(reading: Reading) -> Verdict:
    """How the lines arrived: live, all at the end, start held back, or in bursts."""
    lines = reading.lines
    interval = reading.interval
    offsets = [line.arrived - line.sent for line in lines]
    base = min(offsets)
    held = [offset - base for offset in offsets]
    # A line is held if it came a good part of an interval later than the quickest one:
    # network jitter is far smaller; any buffering hop holds lines for whole intervals.
    tolerance = max(0.8 * interval, 0.05)
    late = [h >= tolerance for h in held]
    bursts = [1]
    for previous, line in zip(lines, lines[1:]):
        bursts.append(bursts[-1] + (line.arrived - previous.arrived >= interval / 2))
    count = len(lines)
    if not any(late):
        worst = max(held)
        return Verdict(
            True,
            "live",
            f"STREAMS: each of the {count} lines arrived as it was sent (the slowest {worst:.3f}s behind the quickest)",
            held,
            bursts,
            [],
        )
    first_held = held[0]
    if count >= 2 and bursts[-1] == 1:
        headers_waited = (reading.headers_at or reading.requested) - reading.requested
        also = f" (even the headers waited {headers_waited:.2f}s)" if headers_waited >= tolerance else ""
        summary = (
            f"BUFFERED: all {count} lines arrived at once when the response ended; "
            f"the first waited {first_held:.2f}s{also}. Something holds the whole response."
        )
        pattern = "end"
    elif late[0] and late.index(False) > 0 and not any(late[late.index(False) :]):
        released = lines[late.index(False)].received
        summary = (
            f"BUFFERED AT THE START: the first {late.index(False)} lines were held (up to {first_held:.2f}s) "
            f"until about {released} bytes had been sent; after that lines streamed. "
            "Something holds the first bytes of a response."
        )
        pattern = "start"
    else:
        sizes = []
        for burst in range(1, bursts[-1] + 1):
            members = [line for line, b in zip(lines, bursts) if b == burst]
            before = max((line.received for line, b in zip(lines, bursts) if b == burst - 1), default=0)
            sizes.append(members[-1].received - before)
        typical = sorted(sizes)[len(sizes) // 2]
        summary = (
            f"BUFFERED IN BURSTS: {count} lines arrived in {bursts[-1]} bursts of about {typical} bytes; "
            f"lines waited up to {max(held):.2f}s. Something passes data on only when a buffer fills."
        )
        pattern = "bursts"
    return Verdict(False, pattern, summary, held, bursts, culprits(reading, pattern))


_NGINX_FIX = (
    "in the nginx location that proxies the stream: 'proxy_buffering off;' (and 'gzip off;'), "
    "or let the stream's own 'X-Accel-Buffering: no' work: take X-Accel-Buffering out of 'proxy_ignore_headers'. "
    "Behind uwsgi_pass or fastcgi_pass: 'uwsgi_buffering off;' or 'fastcgi_buffering off;'."
)


def culprits(reading: Reading, pattern: str) -> list[Culprit]:
    """Who probably buffered, most likely first, from what the response headers give away."""
    found: list[Culprit] = []
    server = reading.header("Server") or ""
    low_server = server.lower()
    via = reading.header("Via")
    encoding = reading.header("Content-Encoding")
    accel = reading.header("X-Accel-Buffering")
    length = reading.header("Content-Length")
    names = {key.lower() for key, _ in reading.headers}
    if encoding and encoding.lower() != "identity":
        found.append(
            Culprit(
                f"compression (Content-Encoding: {encoding})",
                "the response was compressed on the way; a compressor holds its output until its buffer fills "
                "or the response ends",
                "do not compress streams: in nginx 'gzip off;' for the stream's location; in Django exempt the view "
                "from GZipMiddleware; with Flask-Compress set COMPRESS_STREAMS = False; in any other gzip "
                "middleware skip text/event-stream, text/plain and the stream's path.",
            )
        )
    if low_server.startswith(("nginx", "openresty")) or (accel is None and not via and "cf-ray" not in names):
        evidence = []
        if server:
            evidence.append(f"Server: {server}")
        if accel is None:
            evidence.append("the probe's 'X-Accel-Buffering: no' did not arrive (nginx removes it)")
        found.append(Culprit("nginx (a buffering reverse proxy)", "; ".join(evidence), _NGINX_FIX))
    if "cf-ray" in names or low_server == "cloudflare":
        found.append(
            Culprit(
                "Cloudflare",
                "CF-Ray header",
                "Cloudflare streams text/event-stream but may buffer and compress other types: "
                "watch the stream as SSE, or serve it from a hostname that is not proxied.",
            )
        )
    if "x-amz-cf-id" in names:
        found.append(
            Culprit("Amazon CloudFront", "X-Amz-Cf-Id header", "disable compression and caching for the stream path.")
        )
    if "x-varnish" in names or (via and "varnish" in via.lower()):
        found.append(
            Culprit("Varnish", "X-Varnish or Via header", "in vcl_backend_response: set beresp.do_stream = true;")
        )
    if via and not any(c.name in ("Varnish", "Cloudflare") for c in found):
        found.append(
            Culprit(
                f"a proxy or CDN (Via: {via})",
                "the Via header names a hop that relayed the response",
                "turn off response buffering for the stream's path in that proxy, or bypass it.",
            )
        )
    if low_server.startswith("apache"):
        found.append(
            Culprit(
                f"Apache ({server})",
                "Server header",
                "for mod_proxy use 'ProxyPass ... flushpackets=on'; exempt the path from mod_deflate "
                "('SetEnvIf Request_URI ^/stream no-gzip').",
            )
        )
    if low_server.startswith("waitress") and pattern in ("start", "bursts"):
        found.append(
            Culprit(
                f"waitress ({server})",
                "Server header",
                "waitress before 2.0 held 18000 bytes before sending (send_bytes): upgrade, or set send_bytes=1.",
            )
        )
    if length is not None:
        found.append(
            Culprit(
                "something that collected the whole body",
                f"Content-Length: {length} (the probe never sends one, so a hop read the whole response first)",
                "look for a middleware or proxy that reads the response to set Content-Length or rewrite it.",
            )
        )
    if not found:
        found.append(
            Culprit(
                "a hop that does not name itself",
                "no header identifies it",
                "run this check against each hop in turn (the app server directly, then each proxy) "
                "to find the first one that buffers.",
            )
        )
    return found


_COLORS = {"green": "32", "red": "31", "yellow": "33", "bold": "1", "dim": "2"}


class _Painter:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, color: str) -> str:
        return f"\x1b[{_COLORS[color]}m{text}\x1b[0m" if self.enabled else text


def _tick(reading: Reading, out: TextIO, done: threading.Event) -> None:
    """The progress bar on a terminal, redrawn every tenth of a second until ``done``."""
    width = 30
    while True:
        received, total = len(reading.lines), reading.expected
        filled = width * received // max(total, 1)
        elapsed = time.time() - reading.requested
        out.write(f"\r\x1b[K[{'#' * filled}{'.' * (width - filled)}] {received}/{total} lines  {elapsed:.1f}s")
        out.flush()
        if done.wait(0.1):
            return


def report(reading: Reading, verdict: Verdict, out: TextIO, paint: _Painter) -> None:
    """The line-by-line table, the verdict and the culprits."""
    first_sent = reading.lines[0].sent
    for line, held, burst in zip(reading.lines, verdict.held, verdict.bursts):
        late = held >= max(0.8 * reading.interval, 0.05)
        mark = paint("held", "yellow") if late else paint("live", "green")
        out.write(
            f"  line {line.number:>3}/{reading.expected}  sent +{line.sent - first_sent:6.2f}s  "
            f"arrived +{line.arrived - reading.requested:6.2f}s  held {held:5.2f}s  burst {burst:<3} {mark}\n"
        )
    colour = "green" if verdict.streams else "red"
    out.write(paint(f"result: {verdict.summary}", colour) + "\n")
    for position, culprit in enumerate(verdict.culprits):
        label = "likely culprit" if position == 0 else "or"
        out.write(f"{paint(label, 'bold')}: {culprit.name} ({culprit.evidence})\n")
        out.write(f"  fix: {culprit.fix}\n")


def _headers_report(reading: Reading, out: TextIO, paint: _Painter) -> None:
    after = (reading.headers_at or reading.requested) - reading.requested
    out.write(f"{reading.version} {reading.status} {reading.reason}, headers after {after:.3f}s\n")
    for name in ("Server", "Via", "Content-Type", "Content-Encoding", "Content-Length", "Transfer-Encoding"):
        value = reading.header(name)
        if value is not None:
            out.write(paint(f"  {name}: {value}", "dim") + "\n")
    accel = reading.header("X-Accel-Buffering")
    out.write(paint(f"  X-Accel-Buffering: {accel if accel is not None else '(removed on the way)'}", "dim") + "\n")


def run_check(
    url: str,
    *,
    lines: int = 8,
    interval: float = 0.25,
    size: int = 100,
    fmt: str = "html",
    timeout: float | None = None,
    token: str | None = None,
    insecure: bool = False,
    out: TextIO | None = None,
    color: bool | None = None,
) -> int:
    """Check ``url`` and print the report; the exit status (0 streams, 1 buffers, 2 error)."""
    out = out or sys.stdout
    tty = out.isatty()
    if color is None:
        color = tty and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
    paint = _Painter(color)
    try:
        target, url_token = probe_url(url, lines=lines, interval=interval, size=size, fmt=fmt)
    except ValueError as exc:
        out.write(f"error: {exc}\n")
        return 2
    token = token or url_token
    duration = (lines - 1) * interval
    timeout = timeout if timeout is not None else duration + 15.0
    out.write(f"checking {target}\n")
    out.write(f"reading {lines} lines sent {interval:g}s apart (about {duration:.1f}s)...\n")
    out.flush()
    reading = Reading(url=target, expected=lines, interval=interval, requested=time.time())
    done = threading.Event()
    ticker = threading.Thread(target=_tick, args=(reading, out, done), daemon=True) if tty else None
    if ticker is not None:
        # Redraw the bar while nothing arrives too: a buffered stream shows as a bar standing still.
        ticker.start()
    try:
        reading = read_probe(
            target, expected=lines, interval=interval, timeout=timeout, token=token, insecure=insecure, into=reading
        )
    finally:
        done.set()
        if ticker is not None:
            ticker.join()
            out.write("\r\x1b[K")
    if reading.status == 0:
        out.write(paint(f"error: no answer from {target}: {reading.error}", "red") + "\n")
        return 2
    _headers_report(reading, out, paint)
    if reading.status != 200:
        hint = {
            401: "it needs a token: pass --token (or a URL with ?token=)",
            403: "it refused this client",
            404: "nothing is served there: is it the URL of a stream?",
        }.get(reading.status, "")
        body = reading.body_start.decode("utf-8", "replace").strip()[:300]
        out.write(paint(f"error: the server answered {reading.status} {reading.reason}", "red"))
        out.write(f"{': ' + hint if hint else ''}\n")
        if body:
            out.write(f"  {body}\n")
        return 2
    if not reading.lines:
        problem = reading.error or "the response had no probe lines"
        out.write(
            paint(f"error: {problem}", "red")
            + "\n  is this the URL of a wsgi_logstream stream (or of the probe app)?\n"
        )
        return 2
    verdict = analyse(reading)
    report(reading, verdict, out, paint)
    if reading.error or len(reading.lines) < lines:
        out.write(
            paint(f"error: only {len(reading.lines)} of {lines} lines arrived: {reading.error or 'cut short'}", "red")
            + "\n"
        )
        return 1 if not verdict.streams else 2
    return 0 if verdict.streams else 1
