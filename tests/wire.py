"""Strict readers of the four wire formats, shared by every test.

Each reader reads a body the way its real consumer would and fails loudly on
anything that consumer would misread, so a test compares what a reader sees,
not what a substring search guesses:

* :func:`ndjson_objects`: every line one strict JSON object (no ``NaN``, strict
  UTF-8, no lone surrogate), the body ending with a newline.
* :func:`parse_sse`: the EventSource parsing rules (HTML Living Standard,
  "Parsing an event stream"), so a forged ``event:``, ``id:`` or ``retry:``
  field shows up as one.
* :func:`parse_html`: the page walked with :mod:`html.parser`; after
  ``<pre id="log">`` only the elements the library writes may appear, so a
  record that made an element fails the read.
* :func:`parse_text`: record lines apart from the library's own ``-- `` lines,
  with the dash-escaping of ``wsgi_logstream/formats.py`` undone; and
  :func:`check_text`, which refuses any byte a terminal would act on.
* :func:`records`: ``(seq, line)`` of each record, and :func:`summary`, the end
  of the stream, for any of the four formats.

Also the expected rendering of a logged value in each format
(:func:`expected_visible`, :func:`expected_text`, :func:`expected_json`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any, Iterable

from wsgi_logstream.formats import visible

__all__ = [
    "FORMATS",
    "MEDIA_TYPES",
    "HtmlDocument",
    "SseEvent",
    "SseStream",
    "TextStream",
    "check_text",
    "expected_json",
    "expected_text",
    "expected_visible",
    "find_in_order",
    "ndjson_objects",
    "parse_html",
    "parse_sse",
    "parse_text",
    "records",
    "strict_json",
    "summary",
    "terminal_state",
]

FORMATS = ("text", "html", "sse", "ndjson")
#: The Content-Type each format is sent with.
MEDIA_TYPES = {
    "text": "text/plain; charset=utf-8",
    "html": "text/html; charset=utf-8",
    "sse": "text/event-stream",
    "ndjson": "application/x-ndjson",
}


# -- what a record should look like once escaped ----------------------------------


def expected_visible(text: str) -> str:
    """How text, HTML and SSE show ``text``: controls pictured, lone surrogates as ``\\udcXX``."""
    return visible(text).encode("utf-8", "backslashreplace").decode("utf-8")


def terminal_state(text: str) -> str:
    """What a terminal ends on for ``text``: text after a CR draws its line again from the start.

    How the text and HTML formats show a message holding CR (a progress bar); NDJSON and SSE keep it raw.
    """
    shown = []
    for line in re.split("\r\n|\n", text):
        state, rewind = "", False
        for char in line:
            if char == "\r":
                rewind = True
            else:
                state, rewind = ("" if rewind else state) + char, False
        shown.append(state)
    return "\n".join(shown)


def expected_text(text: str) -> str:
    """How the text format shows ``text``: as :func:`expected_visible`, and a line that would start with ``--``
    (the library's own lines do) dash-escaped with ``- ``, so a record cannot forge them."""
    return re.sub("(?:^|(?<=[\n\u2028\u2029]))(?=--)", "- ", expected_visible(text))


def expected_json(text: str) -> str:
    """How NDJSON carries ``text``: exact, except lone surrogates as ``\\udcXX`` text."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


# -- NDJSON ------------------------------------------------------------------------


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def strict_json(text: str) -> Any:
    """``text`` parsed as JSON that any strict parser accepts: no NaN or Infinity, no lone surrogate."""
    value = json.loads(text, parse_constant=_no_constants)
    # Encodable as strict UTF-8: no lone surrogate smuggled in as \ud8xx escapes.
    json.dumps(value, ensure_ascii=False).encode("utf-8")
    return value


def ndjson_objects(body: bytes | str) -> list[dict[str, Any]]:
    """Every line a strict JSON object (no NaN, strict UTF-8, no lone surrogate); the body ends with a newline."""
    text = body.decode("utf-8") if isinstance(body, bytes) else body  # strict: invalid UTF-8 fails here
    if not text:
        return []
    assert text.endswith("\n"), f"NDJSON body does not end with a newline: {text[-80:]!r}"
    objects = []
    for number, line in enumerate(text[:-1].split("\n")):
        obj = strict_json(line)
        assert isinstance(obj, dict), f"line {number} is not an object: {line[:80]!r}"
        objects.append(obj)
    return objects


# -- SSE: the EventSource parsing rules (HTML Living Standard, 9.2.6) ---------------

_SSE_LINES = re.compile("\r\n|\r|\n")


@dataclass(frozen=True)
class SseEvent:
    """One dispatched event: its type, its data, and the last event ID the browser holds at dispatch."""

    type: str
    data: str
    id: str


@dataclass
class SseStream:
    events: list[SseEvent] = field(default_factory=list)
    retries: list[int] = field(default_factory=list)
    fields: dict[str, int] = field(default_factory=dict)  # every field name seen, counted
    comments: list[str] = field(default_factory=list)
    last_event_id: str = ""
    pending: bool = False  # data left undispatched at the end of the stream

    def of_type(self, kind: str) -> list[SseEvent]:
        return [e for e in self.events if e.type == kind]


def parse_sse(body: bytes) -> SseStream:
    """Interpret ``body`` exactly as a browser's EventSource would (bad UTF-8, which it would replace, fails)."""
    text = body.decode("utf-8")
    if text.startswith("\ufeff"):
        text = text[1:]
    stream = SseStream()
    data: list[str] = []
    event_type = ""
    id_buffer = ""
    lines = _SSE_LINES.split(text)
    # The text after the last line break is an incomplete line: never processed.
    complete, rest = lines[:-1], lines[-1]
    for line in complete:
        if line == "":
            stream.last_event_id = id_buffer
            if data:
                payload = "".join(data)
                stream.events.append(SseEvent(event_type or "message", payload[:-1], stream.last_event_id))
            data, event_type = [], ""
            continue
        if line.startswith(":"):
            stream.comments.append(line[1:])
            continue
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        stream.fields[name] = stream.fields.get(name, 0) + 1
        if name == "event":
            event_type = value
        elif name == "data":
            data.append(value + "\n")
        elif name == "id":
            if "\x00" not in value:
                id_buffer = value
        elif name == "retry" and value.isascii() and value.isdigit():
            stream.retries.append(int(value))
    stream.pending = bool(data or rest)
    return stream


# -- HTML ----------------------------------------------------------------------------

#: Every element that may follow ``<pre id="log">``, where records go; anything else came from a record.
#: What comes before it (the page's head, its style and script) is the library's own and sent before any record.
LOG_ELEMENTS = frozenset({"span", "label", "progress", "p"})
VOID = frozenset({"meta", "link", "br", "hr", "img", "input", "wbr", "col", "area", "base", "source", "track", "embed"})


@dataclass
class HtmlDocument:
    records: list[str]  # the text of each record span, in order, with its closing line break
    seqs: list[int]  # the data-seq of each record span
    classes: list[str]  # the class attribute of each record span
    drops: list[str]  # the text of each "lines dropped" span
    progress: list[str]
    end_status: str | None
    end_text: str
    traceback: str
    comments: list[str]  # the comments after the log began (keep-alives)
    tags: list[str]  # the elements after the log began
    declarations: list[str]
    elements: list[tuple[str, tuple[str, ...], dict[str, str | None]]]  # every element: tag, its parents, attributes
    texts: list[tuple[tuple[str, ...], str]]  # every piece of text with the elements it is in


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, dict[str, str | None]]] = []
        self.doc = HtmlDocument([], [], [], [], [], None, "", "", [], [], [], [], [])
        self.pre_closed = 0
        self.in_log = False
        self.stray: list[tuple[str, str]] = []  # text where no text belongs

    def _parents(self) -> tuple[str, ...]:
        return tuple(tag for tag, _ in self.stack)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        doc = self.doc
        doc.elements.append((tag, self._parents(), attributes))
        if not self.in_log:
            # The page's own head: sent before any record, so nothing here can come from one.
            if tag == "pre" and attributes.get("id") == "log":
                self.in_log = True
            if tag not in VOID:
                self.stack.append((tag, attributes))
            return
        doc.tags.append(tag)
        assert tag in LOG_ELEMENTS, f"unexpected element <{tag} {attributes}> after the log began"
        parent = self.stack[-1] if self.stack else None
        if tag in ("span", "label"):
            assert parent is not None and parent[0] == "pre" and parent[1].get("id") == "log", (
                f"<{tag} {attributes}> outside <pre id=log>: inside {parent}"
            )
            assert self.pre_closed == 0, "a record after the log was closed"
            kind = (attributes.get("class") or "").split()
            if "r" in kind and "tb" not in kind:
                doc.records.append("")
                doc.seqs.append(int(attributes.get("data-seq") or "-1"))
                doc.classes.append(attributes.get("class") or "")
            elif "tb" in kind:
                doc.traceback = ""
            elif "drop" in kind:
                doc.drops.append("")
            elif "pg" in kind:
                doc.progress.append("")
            else:
                raise AssertionError(f"span with unexpected class {attributes}")
        if tag == "progress":
            assert parent is not None and parent[0] == "label", "a <progress> outside its label"
        if tag == "p":
            assert self.pre_closed == 1 and attributes.get("id") == "end", f"unexpected <p {attributes}>"
            doc.end_status = attributes.get("data-status")
        self.stack.append((tag, attributes))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        raise AssertionError(f"self-closing <{tag}/> is not part of the page")

    def handle_endtag(self, tag: str) -> None:
        assert self.stack, f"</{tag}> with nothing open"
        open_tag, _ = self.stack.pop()
        assert open_tag == tag, f"</{tag}> closes <{open_tag}>: a record broke the structure"
        if tag == "pre":
            self.pre_closed += 1

    def handle_data(self, data: str) -> None:
        doc = self.doc
        doc.texts.append((self._parents(), data))
        if not self.in_log:
            return
        if not self.stack:
            if data.strip():
                self.stray.append(("document", data))
            return
        tag, attributes = self.stack[-1]
        kind = (attributes.get("class") or "").split()
        if tag == "span" and "r" in kind and "tb" not in kind:
            doc.records[-1] += data
        elif tag == "span" and "tb" in kind:
            doc.traceback += data
        elif tag == "span" and "drop" in kind:
            doc.drops[-1] += data
        elif tag in ("label", "progress"):
            doc.progress[-1] += data
        elif tag == "p":
            doc.end_text += data
        elif data.strip():
            self.stray.append((tag, data))

    def handle_comment(self, data: str) -> None:
        if self.in_log:
            self.doc.comments.append(data)

    def handle_decl(self, decl: str) -> None:
        assert decl.lower() == "doctype html", f"unexpected declaration {decl!r}"
        self.doc.declarations.append(decl)

    def handle_pi(self, data: str) -> None:
        raise AssertionError(f"processing instruction {data!r} in the page")

    def unknown_decl(self, data: str) -> None:
        raise AssertionError(f"unknown declaration {data!r} in the page")


def parse_html(body: bytes | str) -> HtmlDocument:
    """Walk the whole page; fail if any record made an element, a comment or text outside its span."""
    reader = _Reader()
    reader.feed(body.decode("utf-8") if isinstance(body, bytes) else body)
    reader.close()
    assert not reader.stack, f"elements left open: {[t for t, _ in reader.stack]}"
    assert reader.in_log, "no <pre id=log> in the page"
    assert reader.pre_closed == 1, "the log <pre> was not closed exactly once"
    assert not reader.stray, f"text outside any record: {reader.stray[:3]!r}"
    for comment in reader.doc.comments:
        assert comment.strip() == "keepalive", f"a comment that is not a keep-alive: {comment[:80]!r}"
    return reader.doc


# -- text ----------------------------------------------------------------------------

TRACEBACK = "Traceback (most recent call last):"
_SGR = re.compile("\x1b\\[[0-9;]*m")
_RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# The library's dash escape (escape._DASH_START): "- " before a line, or a part after U+2028/U+2029,
# that would start with "--", colour sequences allowed in between.
_DASH_ESCAPE = re.compile("(?:^|(?<=[\u2028\u2029]))- (?=(?:\x1b\\[[0-9;]*m)*--)")


@dataclass
class TextStream:
    lines: list[str]  # the record lines (tracebacks included), dash-escaping undone, keep-alives left out
    framing: list[str]  # the library's own lines: the head, dropped, progress, the summary
    keepalives: int  # empty lines
    in_order: list[tuple[bool, str]]  # every line but keep-alives, in order: (the library's own?, the line)
    traceback: str = ""  # the failure's traceback, printed just before a summary that carries an error

    @property
    def summary(self) -> str:
        """The last line, the summary, which must be the library's own."""
        assert self.framing, "no line of the library's own"
        return self.framing[-1]


def parse_text(body: bytes | str) -> TextStream:
    """Split the text format's lines as its reader would: ``-- `` lines are the library's, others are records."""
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    stream = TextStream([], [], 0, [])
    for line in text.split("\n")[:-1] if text.endswith("\n") else text.split("\n"):
        if line == "":
            stream.keepalives += 1
        elif line.startswith("--"):
            stream.framing.append(line)
            stream.in_order.append((True, line))
        else:
            stream.lines.append(_DASH_ESCAPE.sub("", line))
            stream.in_order.append((False, stream.lines[-1]))
    # The text format does not mark the failure's traceback: it is the run of plain lines between the last
    # "Traceback" line and a summary that names an error ("-- error: ..."). The format cannot tell it from a
    # record's own traceback logged just before a failure that has none (a timeout): tests avoid that case.
    if stream.in_order and stream.in_order[-1][0] and re.match(r"-- [a-z]+: ", stream.in_order[-1][1]):
        run: list[str] = []  # the plain lines just before the summary
        for own, line in reversed(stream.in_order[:-1]):
            if own:
                break
            run.insert(0, line)
        if TRACEBACK in run:
            length = run[::-1].index(TRACEBACK) + 1
            stream.traceback = "\n".join(run[-length:])
            del stream.lines[-length:]
            del stream.in_order[-1 - length : -1]
    return stream


def check_text(body: bytes, *, ansi: bool = False) -> str:
    """The body as text, failing if a terminal would act on anything in it but colour (with ``ansi``)."""
    text = body.decode("utf-8")
    if ansi:
        text_without_colour = _SGR.sub("", text)
    else:
        assert b"\x1b" not in body, "a raw ESC byte reached the text stream"
        text_without_colour = text
    raw = _RAW_CONTROL.search(text_without_colour)
    assert raw is None, f"raw control character {raw.group()!r} in the text stream" if raw else ""
    return text


def find_in_order(haystack: str, needles: Iterable[str]) -> None:
    """Each needle occurs in ``haystack`` after the one before it."""
    position = 0
    for index, needle in enumerate(needles):
        found = haystack.find(needle, position)
        assert found >= 0, f"record {index} ({needle[:60]!r}) not found in order"
        position = found + len(needle)


# -- any format ------------------------------------------------------------------------


def records(body: bytes, fmt: str) -> list[tuple[int | None, str]]:
    """``(seq, line)`` of each log record in a whole body, read as that format's consumer reads it.

    The text format carries no sequence numbers (``None``); its multi-line records come back one line each,
    and the failure's traceback (see :func:`parse_text`) is not a record.
    """
    if fmt == "ndjson":
        return [(o["seq"], o["line"]) for o in ndjson_objects(body) if o["event"] == "log"]
    if fmt == "sse":
        return [(int(e.id), e.data) for e in parse_sse(body).events if e.type == "message"]
    if fmt == "html":
        doc = parse_html(body)
        return [(seq, text.removesuffix("\n")) for seq, text in zip(doc.seqs, doc.records, strict=True)]
    if fmt == "text":
        return [(None, line) for line in parse_text(body).lines]
    raise ValueError(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}")


# The summary line text and HTML show (formats.summary_text): "ok (after 0.01s: 2 lines, 0 dropped)".
_SUMMARY = re.compile(
    r"(?P<status>[a-z]+)(?:: (?P<error>.*))? \(after (?P<elapsed>\d+\.\d\d)s: (?P<records>\d+) lines?, "
    r"(?P<dropped>\d+) dropped\)",
    re.S,
)


def _summary_line(text: str) -> dict[str, Any]:
    match = _SUMMARY.fullmatch(text)
    assert match, f"not a summary: {text[:200]!r}"
    return {
        "status": match["status"],
        "error": match["error"],
        "elapsed": float(match["elapsed"]),
        "records": int(match["records"]),
        "dropped": int(match["dropped"]),
    }


def summary(body: bytes | str, fmt: str) -> dict[str, Any]:
    """The end of a whole stream as its reader finds it: ``status``, ``error`` (``None`` when there is none),
    ``elapsed``, ``records``, ``dropped`` and ``traceback`` (``""`` when there is none).

    NDJSON and SSE carry the end object itself (with any other keys it has); text and HTML carry one line a
    person reads, which must be the stream's last and match ``formats.summary_text`` exactly.
    """
    body = body.encode("utf-8") if isinstance(body, str) else body
    if fmt in ("ndjson", "sse"):
        if fmt == "ndjson":
            end = ndjson_objects(body)[-1]
            assert end["event"] == "end", f"the last object is not the end: {end}"
        else:
            event = parse_sse(body).events[-1]
            assert event.type == "end", f"the last event is not the end: {event}"
            end = strict_json(event.data)
        return {"error": None, "traceback": "", **end}
    if fmt == "html":
        doc = parse_html(body)
        mark, _, line = doc.end_text.partition(" ")
        assert mark == ("\u2714" if doc.end_status == "ok" else "\u2716"), doc.end_text
        found = _summary_line(line)
        assert found["status"] == doc.end_status, (found, doc.end_status)
        return {**found, "traceback": doc.traceback}
    if fmt == "text":
        stream = parse_text(body)
        last = stream.summary
        assert body.endswith(last.encode() + b"\n"), "the summary is not the last line"
        assert last.startswith("-- ") and last.endswith(" --"), last
        return {**_summary_line(last[3:-3]), "traceback": stream.traceback}
    raise ValueError(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}")
