"""The probe's lines: written by :mod:`wsgi_logstream.probe`, read by ``wsgi-logstream check``.

One definition of the grammar for both ends, so the reader cannot drift from
the writer: each line is a template whose ``{field}`` slots are filled by
:func:`start_line`, :func:`numbered_line` and :data:`END`, and the regular
expressions the reader uses are built from the same templates::

    probe start sent=1718000000.000100 lines=8 interval=0.25 format=text
    probe 1/8 sent=1718000000.000200 ..........
    probe end
"""

from __future__ import annotations

import re

__all__ = [
    "END",
    "END_PATTERN",
    "NUMBERED",
    "NUMBERED_PATTERN",
    "START",
    "START_PATTERN",
    "numbered_line",
    "start_line",
]

START = "probe start sent={sent} lines={lines} interval={interval} format={format}"
NUMBERED = "probe {number}/{lines} sent={sent} "
END = "probe end"

# What each slot holds, as the reader matches it.
_SLOTS = {
    "sent": rb"(?P<sent>\d+(?:\.\d+)?)",
    "lines": rb"(?P<lines>\d+)",
    "number": rb"(?P<number>\d+)",
    "interval": rb"(?P<interval>[0-9.e+-]+)",
    "format": rb"(?P<format>[a-z]+)",
}


def _pattern(template: str, *, prefix_only: bool = False) -> re.Pattern[bytes]:
    """The template as a regular expression over bytes: literal text escaped, slots as named groups."""
    if prefix_only:
        template = template.split(" lines=", 1)[0]  # the start line's clock is all the reader needs
    pieces = re.split(r"\{(\w+)\}", template)
    out = b""
    for index, piece in enumerate(pieces):
        out += _SLOTS[piece] if index % 2 else re.escape(piece.encode())
    return re.compile(out)


START_PATTERN = _pattern(START, prefix_only=True)
NUMBERED_PATTERN = _pattern(NUMBERED.rstrip())
END_PATTERN = _pattern(END)


def start_line(sent: float, lines: int, interval: float, fmt: str) -> str:
    """The first line: when the probe started, and what it was asked for."""
    return START.format(sent=f"{sent:.6f}", lines=lines, interval=f"{interval:g}", format=fmt)


def numbered_line(number: int, lines: int, sent: float, size: int) -> str:
    """Line ``number`` of ``lines``, stamped ``sent``, padded with dots to about ``size`` characters."""
    text = NUMBERED.format(number=number, lines=lines, sent=f"{sent:.6f}")
    return text + "." * max(size - len(text) - 1, 0)
