"""The terminal report of ``wsgi-logstream check URL``, and the check itself.

Everything the checked server chose (its reason phrase, ``Server``, ``Via``
and the other headers, an error body, a culprit named from them) is shown
through :func:`wsgi_logstream.formats.visible`, as the text format shows log
lines: an escape sequence from the server (a screen clear, an OSC 52 write to
the clipboard) appears as visible symbols, never reaches the terminal raw.

Exit status: 0 streams, 1 buffers, 2 could not tell (no answer, not a probe, error).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import TextIO

from ...formats import visible
from .client import Reading, probe_url, read_probe
from .verdict import Verdict, analyse

__all__ = ["report", "run_check"]


def _shown(text: str) -> str:
    """What the server sent, safe for a terminal: control characters (ESC too) as visible symbols."""
    return visible(text).replace("\n", "\u2424")


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
    for line, held, burst in zip(reading.lines, verdict.held, verdict.bursts, strict=True):
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
        out.write(f"{paint(label, 'bold')}: {_shown(culprit.name)} ({_shown(culprit.evidence)})\n")
        out.write(f"  fix: {culprit.fix}\n")


def _headers_report(reading: Reading, out: TextIO, paint: _Painter) -> None:
    after = (reading.headers_at or reading.requested) - reading.requested
    out.write(f"{reading.version} {reading.status} {_shown(reading.reason)}, headers after {after:.3f}s\n")
    for name in ("Server", "Via", "Content-Type", "Content-Encoding", "Content-Length", "Transfer-Encoding"):
        value = reading.header(name)
        if value is not None:
            out.write(paint(f"  {name}: {_shown(value)}", "dim") + "\n")
    accel = reading.header("X-Accel-Buffering")
    out.write(
        paint(f"  X-Accel-Buffering: {_shown(accel) if accel is not None else '(removed on the way)'}", "dim") + "\n"
    )


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
        out.write(paint(f"error: no answer from {target}: {_shown(reading.error or '')}", "red") + "\n")
        return 2
    _headers_report(reading, out, paint)
    if reading.status != 200:
        hint = {
            401: "it needs a token: pass --token (or a URL with ?token=)",
            403: "it refused this client",
            404: "nothing is served there: is it the URL of a stream?",
        }.get(reading.status, "")
        body = reading.body_start.decode("utf-8", "replace").strip()[:300]
        out.write(paint(f"error: the server answered {reading.status} {_shown(reading.reason)}", "red"))
        out.write(f"{': ' + hint if hint else ''}\n")
        if body:
            out.write("".join(f"  {_shown(line)}\n" for line in body.splitlines()))
        return 2
    if not reading.lines:
        problem = reading.error or "the response had no probe lines"
        out.write(
            paint(f"error: {_shown(problem)}", "red")
            + "\n  is this the URL of a wsgi_logstream stream (or of the probe app)?\n"
        )
        return 2
    verdict = analyse(reading)
    report(reading, verdict, out, paint)
    if reading.error or len(reading.lines) < lines:
        out.write(
            paint(
                f"error: only {len(reading.lines)} of {lines} lines arrived: {_shown(reading.error or 'cut short')}",
                "red",
            )
            + "\n"
        )
        return 1 if not verdict.streams else 2
    return 0 if verdict.streams else 1
