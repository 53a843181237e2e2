"""Wire formats: pure encoders from entries to bytes.

Four formats, one class each, with the same five methods: ``head`` (sent at
once so that servers such as waitress send headers and proxies see a byte),
``batch`` (everything a reader took in one go, as one chunk), ``keepalive``
(never empty, since servers skip empty chunks, and never mistaken for a log
line), ``end`` (the summary) and ``media_type``. No I/O and no threads here.
The wire formats' escaping is all here; the other places that build markup
(the jobs page, the viewer's page head, the probe, the demo) escape what they
put in it themselves.

Escaping rules, per format:

* text: C0 and C1 control characters (ANSI escapes included) are shown as
  visible symbols (``ESC`` becomes ``␛``) so nothing reaches a ``curl`` user's
  terminal raw; ``ansi=True`` keeps colour (SGR) sequences. CR and CRLF become
  LF. Keep-alives are empty lines. The lines the library writes itself (the
  head, ``-- N lines dropped``, ``-- progress``, the summary) start with
  ``--``, and no other line does, so a logged value cannot forge them: a line
  of a record, or of the failure's traceback, that would start with ``--``
  (also after colour sequences, or after U+2028/U+2029, which some readers
  split on) is dash-escaped with ``- ``, as OpenPGP's cleartext signatures do
  (RFC 4880, 7.1): ``- -- ok``. The head's title and a progress message stay
  on their one line (line breaks shown as ``␤``). All other lines, tracebacks
  included, are written as they are.
* html: every line is HTML-escaped and its control characters shown as in
  text; keep-alives are comments.
* sse: a line is split on CR, LF and CRLF into several ``data:`` fields, so a
  message can never forge an event, id or retry field; keep-alives are
  comments. With ``detail=True`` each record's data is its ndjson object.
* ndjson: ``json.dumps`` of each record, exact; lone surrogates (undecodable
  bytes) are written as ``\\udcXX`` text and non-finite numbers (a record's
  ``time`` included: a filter or record factory may set ``created`` to NaN) as
  ``null``, so every line is strict UTF-8 JSON.

Lines rewritten with CR and sections: their markup is in :mod:`.carriage` and :mod:`.sections`.
"""

from __future__ import annotations

import html
import json
import math
import re
import time
from json.encoder import encode_basestring as _quote  # type: ignore[attr-defined]
from typing import Any, Callable, Sequence

from .assets import ASSET_PREFIX
from .carriage import display_line
from .channel import Entry, Summary
from .viewer import CSP, page_head

__all__ = ["FORMATS", "Format", "HtmlFormat", "NdjsonFormat", "SseFormat", "TextFormat", "visible"]

# C0 controls except TAB and LF, DEL, and C1 controls.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_CONTROL_OR_SGR = re.compile("\x1b\\[[0-9;]*m|[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_NEWLINES = re.compile("\r\n?")
_SPLIT = re.compile("\r\n|\r|\n")
# Where a line that is not the library's own would start with "--": at a line
# start (after LF, or U+2028/U+2029, which str.splitlines and some viewers
# break on), after any colour sequences (a terminal shows "\x1b[0m--" as "--").
_DASH_START = re.compile("(?:^|(?<=[\n\u2028\u2029]))(?=(?:\x1b\\[[0-9;]*m)*--)")
_LINE_BREAKS = re.compile("\r\n|[\r\n\u2028\u2029]")


def _dash_escaped(text: str) -> str:
    """``text`` (already :func:`visible`) with ``- `` before each line that would start with ``--``."""
    return _DASH_START.sub("- ", text) if "--" in text else text


def _one_line(text: str) -> str:
    """``text`` with its line breaks shown as ``␤``, so it cannot end the line it is on."""
    return _LINE_BREAKS.sub("\u2424", text)


def _picture(match: re.Match[str]) -> str:
    char = match.group()
    if len(char) > 1:
        return char  # an SGR colour sequence kept on purpose
    code = ord(char)
    if code < 0x20:
        return chr(0x2400 + code)  # U+2400 CONTROL PICTURES: ␀ ␁ … ␛ …
    if code == 0x7F:
        return "\u2421"  # ␡
    return f"\\x{code:02x}"  # C1 controls have no pictures


def visible(text: str, *, keep_sgr: bool = False) -> str:
    """``text`` with CR/CRLF as LF and other control characters made visible."""
    if "\r" in text:
        text = _NEWLINES.sub("\n", text)
    return (_CONTROL_OR_SGR if keep_sgr else _CONTROL).sub(_picture, text)


def _utf8(text: str) -> bytes:
    # Lone surrogates (bytes a subprocess could not decode) become \udcXX text.
    return text.encode("utf-8", "backslashreplace")


def _clean(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _finite(number: float | None) -> float | None:
    # NaN and infinities are not JSON: json.dumps would write NaN, which strict
    # parsers (JSON.parse) reject, breaking the whole line.
    return number if number is not None and math.isfinite(number) else None


_second: tuple[int, str] = (-1, "")  # the last whole second formatted by _iso: records come in runs


def _iso(epoch: float) -> str | None:
    """``epoch`` as ISO 8601 in UTC with microseconds, ``2026-11-30T21:54:31.123456+00:00`` (None if no such time).

    With its offset, so a reader in any time zone (the page, a script) knows
    which instant it is without knowing the server's zone.
    """
    global _second
    if not math.isfinite(epoch):
        return None
    whole = math.floor(epoch)
    micro = round((epoch - whole) * 1e6)
    if micro == 1_000_000:
        whole, micro = whole + 1, 0
    cached = _second
    if cached[0] != whole:
        try:
            cached = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
        except (OverflowError, OSError, ValueError):
            return None
        _second = cached
    return f"{cached[1]}.{micro:06d}+00:00"


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _percent(entry: Entry) -> str:
    if entry.total:
        return f"{entry.done:g}/{entry.total:g} ({100 * entry.done / entry.total:.0f}%)"
    return f"{entry.done:g}"


def summary_text(summary: Summary, dropped: int) -> str:
    """One line a person reads: ``ok in 1.2s: 42 lines, 0 dropped``."""
    head = summary.status
    if summary.error:
        head += f": {summary.error}"
    return f"{head} (after {summary.elapsed:.2f}s: {_plural(summary.records, 'line')}, {dropped} dropped)"


def summary_object(summary: Summary, dropped: int, seq: int) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "event": "end",
        "seq": seq,
        "status": summary.status,
        "elapsed": _finite(round(summary.elapsed, 6)),
        "records": summary.records,
        "dropped": dropped,
    }
    if summary.error is not None:
        obj["error"] = _clean(summary.error)
    if summary.traceback is not None:
        obj["traceback"] = _clean(summary.traceback)
    return obj


def record_object(entry: Entry) -> dict[str, Any]:
    if entry.kind == "section":
        return section_object(entry)
    if entry.kind == "progress":
        return {
            "event": "progress",
            "seq": entry.seq,
            "time": _finite(entry.created),
            "ts": _iso(entry.created),
            "done": _finite(entry.done),
            "total": _finite(entry.total),
            "message": _clean(entry.message) if entry.message else None,
        }
    return {
        "event": "log",
        "seq": entry.seq,
        "time": _finite(entry.created),
        "ts": _iso(entry.created),
        "level": _clean(entry.levelname),
        "levelno": entry.levelno,
        "logger": _clean(entry.name),
        "message": _clean(entry.message),
        "line": _clean(entry.line),
        **({"partial": True} if entry.kind == "partial" else {}),
    }


def section_object(entry: Entry) -> dict[str, Any]:
    obj: dict[str, Any] = {"event": "section", "seq": entry.seq, "time": _finite(entry.created), "action": entry.line}
    obj.update(name=_clean(entry.message), depth=entry.levelno)
    if entry.line == "end":
        obj.update(status=entry.levelname, elapsed=_finite(round(entry.done, 3)))
    return obj


def section_html(entry: Entry) -> str:
    name = html.escape(visible(_one_line(entry.message)), quote=False)
    if entry.line != "end":
        return (
            f'<details open class="sec" data-seq="{entry.seq}" data-depth="{entry.levelno}"><summary>{name}</summary>'
        )
    status, mark = ("error", "\u2716") if entry.levelname == "error" else ("ok", "\u2714")
    attributes = (
        f'class="sec-end {status}" data-seq="{entry.seq}" data-status="{status}" data-elapsed="{entry.done:.3f}"'
    )
    return f"<span {attributes}>{mark} {name} ({status}, {entry.done:.1f}s)\n</span></details>"


def _json(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def record_json(entry: Entry) -> str:
    """``_json(record_object(entry))``, fast for log records: this is the hot path.

    Strings are quoted by the json module's C encoder but not checked for lone
    surrogates; the caller encodes the batch strictly and, should one be
    there, falls back to :func:`record_object`, which cleans them.
    """
    if entry.kind != "log":
        return _json(record_object(entry))
    created = entry.created
    when = repr(created) if created - created == 0 else "null"  # NaN and infinities: not JSON
    iso = _iso(created)
    ts = "null" if iso is None else '"' + iso + '"'  # digits and punctuation: nothing to escape
    return (
        f'{{"event":"log","seq":{entry.seq},"time":{when},"ts":{ts},"level":{_quote(entry.levelname)},'
        f'"levelno":{entry.levelno},"logger":{_quote(entry.name)},"message":{_quote(entry.message)},'
        f'"line":{_quote(entry.line)}}}'
    )


def _exact_json(entry: Entry) -> str:
    return _json(record_object(entry))


class Format:
    """The interface every wire format implements."""

    name = ""
    media_type = ""
    #: Response headers this format adds to the stream's own.
    headers: tuple[tuple[str, str], ...] = ()

    def head(self, title: str, started: float) -> bytes:
        raise NotImplementedError

    def batch(self, missed: int, entries: Sequence[Entry]) -> bytes:
        raise NotImplementedError

    def keepalive(self) -> bytes:
        raise NotImplementedError

    def end(self, summary: Summary, dropped: int, seq: int) -> bytes:
        raise NotImplementedError


class TextFormat(Format):
    """``text/plain``: each record's line; ``--``-framed lines for the rest."""

    name = "text"
    media_type = "text/plain; charset=utf-8"

    def __init__(self, *, ansi: bool = False) -> None:
        self.ansi = ansi

    def head(self, title: str, started: float) -> bytes:
        return _utf8(f"-- {visible(_one_line(title))}: started {_when(started)} --\n")

    def batch(self, missed: int, entries: Sequence[Entry]) -> bytes:
        parts = [f"-- {_plural(missed, 'line')} dropped: not kept for this reader --\n"] if missed else []
        for entry in entries:
            # Each entry on its own: a record ending in CR must not merge with
            # the LF after it and so hide where one record ends.
            if entry.kind == "log":
                parts.append(_dash_escaped(visible(display_line(entry), keep_sgr=self.ansi)))
                parts.append("\n")
            elif entry.kind == "section":
                end = f" ({entry.levelname}, {entry.done:.1f}s)" if entry.line == "end" else ""
                parts.append(f"-- section {entry.line}: {visible(_one_line(entry.message))}{end} --\n")
            elif entry.kind == "progress":
                note = f" {visible(_one_line(entry.message))}" if entry.message else ""
                parts.append(f"-- progress {_percent(entry)}{note} --\n")
        return _utf8("".join(parts))

    def keepalive(self) -> bytes:
        return b"\n"

    def end(self, summary: Summary, dropped: int, seq: int) -> bytes:
        # The summary stays one line, the last, whatever the error message holds
        # (its line breaks shown as ␤; the traceback above has it in full).
        text = visible(f"-- {_one_line(summary_text(summary, dropped))} --\n")
        if summary.traceback:
            text = _dash_escaped(visible(summary.traceback.rstrip("\n"))) + "\n" + text
        return _utf8(text)


class NdjsonFormat(Format):
    """``application/x-ndjson``: one JSON object per line, each with an ``event``."""

    name = "ndjson"
    media_type = "application/x-ndjson"

    def head(self, title: str, started: float) -> bytes:
        return _utf8(_json({"event": "start", "title": _clean(title), "time": _finite(started)}) + "\n")

    def batch(self, missed: int, entries: Sequence[Entry]) -> bytes:
        try:
            return self._lines(missed, entries, record_json).encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate somewhere: the careful way
            return self._lines(missed, entries, _exact_json).encode("utf-8")

    @staticmethod
    def _lines(missed: int, entries: Sequence[Entry], dump: Callable[[Entry], str]) -> str:
        lines = [_json({"event": "dropped", "count": missed})] if missed else []
        lines.extend(map(dump, entries))
        lines.append("")
        return "\n".join(lines)

    def keepalive(self) -> bytes:
        return b'{"event":"keepalive"}\n'

    def end(self, summary: Summary, dropped: int, seq: int) -> bytes:
        return (_json(summary_object(summary, dropped, seq)) + "\n").encode("utf-8")


class SseFormat(Format):
    """``text/event-stream``: a record is an unnamed event with ``id`` = its seq."""

    name = "sse"
    media_type = "text/event-stream"

    def __init__(self, *, detail: bool = False, retry_ms: int = 3000, last_id: int = 0) -> None:
        self.detail = detail
        self.retry_ms = retry_ms
        self.last_id = last_id  # where a resumed stream starts: a reconnect before any event resumes there

    def head(self, title: str, started: float) -> bytes:
        # An "id:" with no data dispatches nothing but sets lastEventId, so even a
        # stream cut before its first record reconnects with Last-Event-ID.
        return f"retry: {self.retry_ms}\nid: {self.last_id}\n\n: {_clean(_SPLIT.sub(' ', title))}\n\n".encode()

    def batch(self, missed: int, entries: Sequence[Entry]) -> bytes:
        parts = [f"event: dropped\ndata: {_json({'count': missed})}\n\n"] if missed else []
        for entry in entries:
            if entry.kind == "progress" or entry.kind == "section":
                parts.append(f"id: {entry.seq}\nevent: {entry.kind}\ndata: {_json(record_object(entry))}\n\n")
            elif entry.kind == "partial":  # no id: resuming must take this line again, at its newer state
                parts.append(f"event: partial\ndata: {_json(record_object(entry))}\n\n")
            elif self.detail:
                parts.append(f"id: {entry.seq}\ndata: {_json(record_object(entry))}\n\n")
            else:
                data = "\ndata: ".join(_SPLIT.split(visible(entry.line)))
                parts.append(f"id: {entry.seq}\ndata: {data}\n\n")
        return _utf8("".join(parts))

    def keepalive(self) -> bytes:
        return b": keepalive\n\n"

    def end(self, summary: Summary, dropped: int, seq: int) -> bytes:
        return _utf8(f"id: {seq}\nevent: end\ndata: {_json(summary_object(summary, dropped, seq))}\n\n")


_LEVEL_CLASS = {10: "d", 20: "i", 30: "w", 40: "e", 50: "c"}


def _level_class(levelno: int) -> str:
    return _LEVEL_CLASS.get(levelno) or ("d" if levelno < 20 else "i" if levelno < 30 else "w" if levelno < 40 else "e")


def _data_time(epoch: float) -> str:
    # The record's time for the page's script (shown in the reader's time zone), to the millisecond.
    return f' data-t="{epoch:.3f}"' if math.isfinite(epoch) else ""


class HtmlFormat(Format):
    """``text/html``: a document that streams and paints with JavaScript off."""

    name = "html"
    media_type = "text/html; charset=utf-8"
    # No framing by other sites (clickjacking); no inline script or style, so a strict policy costs nothing.
    headers = (("X-Frame-Options", "SAMEORIGIN"), ("Content-Security-Policy", CSP))

    def __init__(self, *, resumable: bool = False, assets: str = ASSET_PREFIX, actions: str = "") -> None:
        self.resumable = resumable  # a job: the page may reconnect over SSE and resume
        self.assets = assets  # the URL of the mount point's _assets/ as the page writes it (assets.asset_prefix)
        self.actions = actions  # escaped markup for the header: a running job's cancel form

    def head(self, title: str, started: float) -> bytes:
        return _utf8(page_head(title, started, resumable=self.resumable, assets=self.assets, actions=self.actions))

    def batch(self, missed: int, entries: Sequence[Entry]) -> bytes:
        parts = (
            [f'<span class="drop">-- {_plural(missed, "line")} dropped: not kept for this page --\n</span>']
            if missed
            else []
        )
        escape = html.escape
        for entry in entries:
            if entry.kind == "log" or entry.kind == "partial":
                partial = ' p" data-partial="1' if entry.kind == "partial" else ""
                parts.append(
                    f'<span class="r {_level_class(entry.levelno)}{partial}" data-seq="{entry.seq}"{_data_time(entry.created)}>'
                    f"{escape(visible(display_line(entry)), quote=False)}\n</span>"
                )
            elif entry.kind == "section":
                parts.append(section_html(entry))
            else:
                value = f' value="{entry.done:g}" max="{entry.total:g}"' if entry.total else ""
                note = escape(visible(f" {entry.message}"), quote=False) if entry.message else ""
                parts.append(
                    f'<label class="pg" data-seq="{entry.seq}"><progress{value}></progress> {_percent(entry)}{note}</label>'
                )
        return _utf8("".join(parts))

    def keepalive(self) -> bytes:
        return b"<!-- keepalive -->"  # no newline: inside <pre> it would show as a blank line

    def end(self, summary: Summary, dropped: int, seq: int) -> bytes:
        trace = ""
        if summary.traceback:
            trace = f'<span class="r e tb">{html.escape(visible(summary.traceback), quote=False)}</span>'
        mark = "\u2714" if summary.status == "ok" else "\u2716"
        text = html.escape(visible(summary_text(summary, dropped)), quote=False)
        return _utf8(
            f'{trace}</pre><p class="end {html.escape(summary.status)}" id="end" '
            f'data-status="{html.escape(summary.status)}">{mark} {text}</p></div></main></body></html>\n'
        )


FORMATS = ("text", "html", "sse", "ndjson")
