"""The verdict on a probe reading: how the lines arrived, and who probably held them.

:func:`analyse` compares each line's arrival with the quickest one (clocks
need not agree) and names the pattern: live, all at once at the end, the start
held back, or bursts of about N bytes. :func:`culprits` reads the response
headers (``Server``, ``Via``, ``Content-Encoding``, CDN headers, whether
``X-Accel-Buffering: no`` survived the trip) for the likely hop and its fix.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from .client import Reading

__all__ = ["Culprit", "Verdict", "analyse", "culprits"]


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
    for previous, line in itertools.pairwise(lines):
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
            members = [line for line, b in zip(lines, bursts, strict=True) if b == burst]
            before = max((line.received for line, b in zip(lines, bursts, strict=True) if b == burst - 1), default=0)
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
