"""Wire formats: pure encoders from entries to bytes.

Four formats, one class each, with the same methods: ``head`` (sent at
once so that servers such as waitress send headers and proxies see a byte),
``batch`` (everything a reader took in one go, as one chunk), ``keepalive``
(never empty, since servers skip empty chunks, and never mistaken for a log
line), ``end`` (the summary) and ``media_type``; and ``records``, a plain stream's
live log records encoded from their fields, byte for byte as ``batch`` would
encode their entries. No I/O and no threads here. The wire formats' escaping
is theirs alone: its rules are here, its helpers in :mod:`.escape` and each
entry's rendering in :mod:`.records`; the other places that build markup
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

Lines rewritten with CR are folded by :mod:`.carriage`; sections are rendered in :mod:`.records`.
"""

from __future__ import annotations

import html
import time
from typing import Any, Callable, Sequence

from .assets import ASSET_PREFIX
from .entry import Entry, Record, Summary
from .escape import clean, dash_escaped, finite, json_text, one_line, split_lines, utf8, visible
from .records import log_html, log_json, log_object, log_sse, log_text, record_json, record_object, section_html
from .viewer import CSP, page_head

__all__ = ["FORMATS", "Format", "HtmlFormat", "NdjsonFormat", "SseFormat", "TextFormat", "visible"]


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
        "elapsed": finite(round(summary.elapsed, 6)),
        "records": summary.records,
        "dropped": dropped,
    }
    if summary.error is not None:
        obj["error"] = clean(summary.error)
    if summary.traceback is not None:
        obj["traceback"] = clean(summary.traceback)
    return obj


def _exact_json(entry: Entry) -> str:
    return json_text(record_object(entry))


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

    def records(self, first: int, records: Sequence[Record]) -> bytes:
        """``batch(0, entries)`` for log records numbered from ``first``, given as their fields.

        What a plain stream's reader sends while it keeps up: it takes the records
        waiting in the channel's inbox without making an entry of each
        (``Reader.take_records``). This default makes the entries; the four formats
        render the fields with the functions their ``batch`` uses for a log entry
        (:mod:`.records`), so the bytes are the same either way.
        """
        return self.batch(0, [Entry.log(seq, record) for seq, record in enumerate(records, first)])


class TextFormat(Format):
    """``text/plain``: each record's line; ``--``-framed lines for the rest."""

    name = "text"
    media_type = "text/plain; charset=utf-8"

    def __init__(self, *, ansi: bool = False) -> None:
        self.ansi = ansi

    def head(self, title: str, started: float) -> bytes:
        return utf8(f"-- {visible(one_line(title))}: started {_when(started)} --\n")

    def batch(self, missed: int, entries: Sequence[Entry]) -> bytes:
        parts = [f"-- {_plural(missed, 'line')} dropped: not kept for this reader --\n"] if missed else []
        for entry in entries:
            # Each entry on its own: a record ending in CR must not merge with
            # the LF after it and so hide where one record ends.
            if entry.kind == "log":
                parts.append(log_text(entry.line, entry.message, self.ansi))
            elif entry.kind == "section":
                end = f" ({entry.levelname}, {entry.done:.1f}s)" if entry.line == "end" else ""
                parts.append(f"-- section {entry.line}: {visible(one_line(entry.message))}{end} --\n")
            elif entry.kind == "progress":
                note = f" {visible(one_line(entry.message))}" if entry.message else ""
                parts.append(f"-- progress {_percent(entry)}{note} --\n")
        return utf8("".join(parts))

    def records(self, first: int, records: Sequence[Record]) -> bytes:
        if len(records) == 1:  # a live reader's usual take: the one line that woke it, on the latency path
            record = records[0]
            return utf8(log_text(record[5], record[4], self.ansi))
        ansi = self.ansi
        return utf8("".join([log_text(line, message, ansi) for _, _, _, _, message, line in records]))

    def keepalive(self) -> bytes:
        return b"\n"

    def end(self, summary: Summary, dropped: int, seq: int) -> bytes:
        # The summary stays one line, the last, whatever the error message holds
        # (its line breaks shown as ␤; the traceback above has it in full).
        text = visible(f"-- {one_line(summary_text(summary, dropped))} --\n")
        if summary.traceback:
            text = dash_escaped(visible(summary.traceback.rstrip("\n"))) + "\n" + text
        return utf8(text)


class NdjsonFormat(Format):
    """``application/x-ndjson``: one JSON object per line, each with an ``event``."""

    name = "ndjson"
    media_type = "application/x-ndjson"

    def head(self, title: str, started: float) -> bytes:
        return utf8(json_text({"event": "start", "title": clean(title), "time": finite(started)}) + "\n")

    def batch(self, missed: int, entries: Sequence[Entry]) -> bytes:
        try:
            return self._lines(missed, entries, record_json).encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate somewhere: the careful way
            return self._lines(missed, entries, _exact_json).encode("utf-8")

    @staticmethod
    def _lines(missed: int, entries: Sequence[Entry], dump: Callable[[Entry], str]) -> str:
        lines = [json_text({"event": "dropped", "count": missed})] if missed else []
        lines.extend(map(dump, entries))
        lines.append("")
        return "\n".join(lines)

    def records(self, first: int, records: Sequence[Record]) -> bytes:
        try:
            lines = [log_json(seq, *record) for seq, record in enumerate(records, first)]
            lines.append("")
            return "\n".join(lines).encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate somewhere: the careful way
            lines = [json_text(log_object(seq, *record)) for seq, record in enumerate(records, first)]
            lines.append("")
            return "\n".join(lines).encode("utf-8")

    def keepalive(self) -> bytes:
        return b'{"event":"keepalive"}\n'

    def end(self, summary: Summary, dropped: int, seq: int) -> bytes:
        return (json_text(summary_object(summary, dropped, seq)) + "\n").encode("utf-8")


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
        return f"retry: {self.retry_ms}\nid: {self.last_id}\n\n: {clean(' '.join(split_lines(title)))}\n\n".encode()

    def batch(self, missed: int, entries: Sequence[Entry]) -> bytes:
        parts = [f"event: dropped\ndata: {json_text({'count': missed})}\n\n"] if missed else []
        for entry in entries:
            if entry.kind == "progress" or entry.kind == "section":
                parts.append(f"id: {entry.seq}\nevent: {entry.kind}\ndata: {json_text(record_object(entry))}\n\n")
            elif entry.kind == "partial":  # no id: resuming must take this line again, at its newer state
                parts.append(f"event: partial\ndata: {json_text(record_object(entry))}\n\n")
            elif self.detail:
                parts.append(f"id: {entry.seq}\ndata: {json_text(record_object(entry))}\n\n")
            else:
                parts.append(log_sse(entry.seq, entry.line))
        return utf8("".join(parts))

    def records(self, first: int, records: Sequence[Record]) -> bytes:
        if self.detail:
            events = [
                f"id: {seq}\ndata: {json_text(log_object(seq, *record))}\n\n"
                for seq, record in enumerate(records, first)
            ]
        elif len(records) == 1:  # a live reader's usual take (see TextFormat.records)
            return utf8(log_sse(first, records[0][5]))
        else:
            events = [log_sse(seq, record[5]) for seq, record in enumerate(records, first)]
        return utf8("".join(events))

    def keepalive(self) -> bytes:
        return b": keepalive\n\n"

    def end(self, summary: Summary, dropped: int, seq: int) -> bytes:
        return utf8(f"id: {seq}\nevent: end\ndata: {json_text(summary_object(summary, dropped, seq))}\n\n")


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
        return utf8(page_head(title, started, resumable=self.resumable, assets=self.assets, actions=self.actions))

    def batch(self, missed: int, entries: Sequence[Entry]) -> bytes:
        parts = (
            [f'<span class="drop">-- {_plural(missed, "line")} dropped: not kept for this page --\n</span>']
            if missed
            else []
        )
        escape = html.escape
        for entry in entries:
            if entry.kind == "log" or entry.kind == "partial":
                partial = entry.kind == "partial"
                parts.append(log_html(entry.seq, entry.created, entry.levelno, entry.message, entry.line, partial))
            elif entry.kind == "section":
                parts.append(section_html(entry))
            else:
                value = f' value="{entry.done:g}" max="{entry.total:g}"' if entry.total else ""
                note = escape(visible(f" {entry.message}"), quote=False) if entry.message else ""
                parts.append(
                    f'<label class="pg" data-seq="{entry.seq}"><progress{value}></progress> {_percent(entry)}{note}</label>'
                )
        return utf8("".join(parts))

    def records(self, first: int, records: Sequence[Record]) -> bytes:
        return utf8(
            "".join(
                [
                    log_html(seq, created, levelno, message, line)
                    for seq, (created, levelno, _, _, message, line) in enumerate(records, first)
                ]
            )
        )

    def keepalive(self) -> bytes:
        return b"<!-- keepalive -->"  # no newline: inside <pre> it would show as a blank line

    def end(self, summary: Summary, dropped: int, seq: int) -> bytes:
        trace = ""
        if summary.traceback:
            trace = f'<span class="r e tb">{html.escape(visible(summary.traceback), quote=False)}</span>'
        mark = "\u2714" if summary.status == "ok" else "\u2716"
        text = html.escape(visible(summary_text(summary, dropped)), quote=False)
        return utf8(
            f'{trace}</pre><p class="end {html.escape(summary.status)}" id="end" '
            f'data-status="{html.escape(summary.status)}">{mark} {text}</p></div></main></body></html>\n'
        )


FORMATS = ("text", "html", "sse", "ndjson")
