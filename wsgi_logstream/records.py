"""One entry as each wire format writes it: its JSON object and line, its text line, SSE event and HTML markup.

Two ways in, with the same bytes out: an :class:`~wsgi_logstream.entry.Entry`
(what :meth:`Format.batch <wsgi_logstream.formats.Format.batch>` encodes), or a
log record's fields (what :meth:`Format.records
<wsgi_logstream.formats.Format.records>` encodes: a plain stream's reader
takes the records that wait in the channel's inbox without making an entry of
each, see ``Reader.take_records``). Each ``log_*`` function here is the one
place its format renders a log record, whichever way it came; the escaping
rules are in :mod:`.formats`.
"""

from __future__ import annotations

import html
import math
from typing import Any

from .carriage import fold
from .entry import Entry
from .escape import clean, dash_escaped, finite, iso, json_text, one_line, quote, split_lines, visible

__all__ = [
    "log_html",
    "log_json",
    "log_object",
    "log_sse",
    "log_text",
    "record_json",
    "record_object",
    "section_html",
    "section_object",
]


def log_object(
    seq: int,
    created: float,
    levelno: int,
    levelname: str,
    name: str,
    message: str,
    line: str,
    partial: bool = False,
) -> dict[str, Any]:
    """A log record as an ndjson object (its strings made strict UTF-8)."""
    return {
        "event": "log",
        "seq": seq,
        "time": finite(created),
        "ts": iso(created),
        "level": clean(levelname),
        "levelno": levelno,
        "logger": clean(name),
        "message": clean(message),
        "line": clean(line),
        **({"partial": True} if partial else {}),
    }


def log_json(seq: int, created: float, levelno: int, levelname: str, name: str, message: str, line: str) -> str:
    """``json_text(log_object(...))``, fast: this is the hot path of the ndjson format.

    Strings are quoted by the json module's C encoder but not checked for lone
    surrogates; the caller encodes the batch strictly and, should one be
    there, falls back to :func:`log_object`, which cleans them.
    """
    when = repr(created) if created - created == 0 else "null"  # NaN and infinities: not JSON
    stamp = iso(created)
    ts = "null" if stamp is None else '"' + stamp + '"'  # digits and punctuation: nothing to escape
    return (
        f'{{"event":"log","seq":{seq},"time":{when},"ts":{ts},"level":{quote(levelname)},'
        f'"levelno":{levelno},"logger":{quote(name)},"message":{quote(message)},"line":{quote(line)}}}'
    )


def log_text(line: str, message: str, keep_sgr: bool) -> str:
    """A log record's line in the text format, its newline included."""
    return dash_escaped(visible(fold(line, message), keep_sgr=keep_sgr)) + "\n"


def log_sse(seq: int, line: str) -> str:
    """A log record as an SSE event (without ``detail``): each of its lines a ``data:`` field."""
    data = "\ndata: ".join(split_lines(visible(line)))
    return f"id: {seq}\ndata: {data}\n\n"


_LEVEL_CLASS = {10: "d", 20: "i", 30: "w", 40: "e", 50: "c"}


def _level_class(levelno: int) -> str:
    return _LEVEL_CLASS.get(levelno) or ("d" if levelno < 20 else "i" if levelno < 30 else "w" if levelno < 40 else "e")


def log_html(seq: int, created: float, levelno: int, message: str, line: str, partial: bool = False) -> str:
    """A log record's line in the HTML format: a span the page styles by level."""
    mark = ' p" data-partial="1' if partial else ""
    # The record's time for the page's script (shown in the reader's time zone), to the millisecond.
    when = f' data-t="{created:.3f}"' if math.isfinite(created) else ""
    return (
        f'<span class="r {_level_class(levelno)}{mark}" data-seq="{seq}"{when}>'
        f"{html.escape(visible(fold(line, message)), quote=False)}\n</span>"
    )


def record_object(entry: Entry) -> dict[str, Any]:
    """Any entry as an ndjson object."""
    if entry.kind == "section":
        return section_object(entry)
    if entry.kind == "progress":
        return {
            "event": "progress",
            "seq": entry.seq,
            "time": finite(entry.created),
            "ts": iso(entry.created),
            "done": finite(entry.done),
            "total": finite(entry.total),
            "message": clean(entry.message) if entry.message else None,
        }
    return log_object(
        entry.seq,
        entry.created,
        entry.levelno,
        entry.levelname,
        entry.name,
        entry.message,
        entry.line,
        entry.kind == "partial",
    )


def record_json(entry: Entry) -> str:
    """``json_text(record_object(entry))``, fast for log records (see :func:`log_json`)."""
    if entry.kind != "log":
        return json_text(record_object(entry))
    return log_json(entry.seq, entry.created, entry.levelno, entry.levelname, entry.name, entry.message, entry.line)


def section_object(entry: Entry) -> dict[str, Any]:
    obj: dict[str, Any] = {"event": "section", "seq": entry.seq, "time": finite(entry.created), "action": entry.line}
    obj.update(name=clean(entry.message), depth=entry.levelno)
    if entry.line == "end":
        obj.update(status=entry.levelname, elapsed=finite(round(entry.done, 3)))
    return obj


def section_html(entry: Entry) -> str:
    name = html.escape(visible(one_line(entry.message)), quote=False)
    if entry.line != "end":
        return (
            f'<details open class="sec" data-seq="{entry.seq}" data-depth="{entry.levelno}"><summary>{name}</summary>'
        )
    status, mark = ("error", "\u2716") if entry.levelname == "error" else ("ok", "\u2714")
    attributes = (
        f'class="sec-end {status}" data-seq="{entry.seq}" data-status="{status}" data-elapsed="{entry.done:.3f}"'
    )
    return f"<span {attributes}>{mark} {name} ({status}, {entry.done:.1f}s)\n</span></details>"
