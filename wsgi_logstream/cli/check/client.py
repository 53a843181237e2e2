"""Reading the probe as a browser would: asking for gzip, decoding as it comes, timing each line.

:func:`probe_url` turns the URL of a stream into the URL of its probe
(``?probe=1``, see :mod:`wsgi_logstream.probe`); :func:`read_probe` GETs it and
records when each line arrived next to when the server stamped it. The lines
are recognised with the patterns of :mod:`wsgi_logstream.probe_lines`, the
same templates the probe writes them with.
"""

from __future__ import annotations

import http.client
import ssl
import time
import zlib
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ... import __version__
from ...probe_lines import END_PATTERN, NUMBERED_PATTERN, START_PATTERN

__all__ = ["Arrival", "Reading", "probe_url", "read_probe"]

# The probe's first line comes after the format's head (the HTML page's is some KB): past this, not a probe.
_HEAD_BUDGET = 256 * 1024
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
                raise TimeoutError()
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
            if reading.ended or (reading.start_arrived is None and reading.received > _HEAD_BUDGET):
                break  # the end, or that much without the probe's first line: not a probe, stop here
        if pending:
            _parse_line(reading, pending, time.time())
    except TimeoutError:
        reading.error = f"timed out after {timeout:g}s"
    except (OSError, http.client.HTTPException, zlib.error) as exc:
        reading.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    finally:
        reading.finished = reading.finished or time.time()
        connection.close()
    return reading


def _parse_line(reading: Reading, line: bytes, now: float) -> None:
    reading.received += len(line) + 1
    match = NUMBERED_PATTERN.search(line)
    if match:
        reading.lines.append(Arrival(int(match["number"]), float(match["sent"]), now, reading.received))
        return
    if reading.start_arrived is None and START_PATTERN.search(line):
        reading.start_arrived = now
    elif END_PATTERN.search(line):
        reading.ended = True
