"""Strict readers of the four wire formats, for the hostile-condition tests.

Each reader reads a body the way its real consumer would and fails loudly on
anything that consumer would misread: the SSE reader follows the EventSource
parsing rules (so a forged ``event:``, ``id:`` or ``retry:`` field shows up as
one), the HTML reader walks the document with :mod:`html.parser` and knows
every element the page may contain, the NDJSON reader refuses ``NaN`` and
lone surrogates, and the text check refuses any byte a terminal would act on.
Also here: a direct WSGI call (through :mod:`wsgiref.validate`, so the WSGI
contract is checked too) and a snapshot of the process's threads, descriptors
and logging handlers.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import socket
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any, Iterable
from wsgiref.util import setup_testing_defaults
from wsgiref.validate import validator

from wsgi_logstream.formats import visible

__all__ = [
    "HtmlDocument",
    "SseStream",
    "call",
    "check_text",
    "dechunk",
    "expected_text",
    "expected_visible",
    "half_closed",
    "ndjson_objects",
    "parse_html",
    "parse_sse",
    "read_all",
    "snapshot",
    "stats",
    "stuck_socket",
]


# -- calling an app --------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


def call(
    app: Any,
    query: str = "",
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    environ: dict[str, Any] | None = None,
    validate: bool = True,
) -> Reply:
    """Run one request through ``app`` (checked by ``wsgiref.validate`` unless the environ is invalid on purpose)."""
    env: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "QUERY_STRING": query,
        "SCRIPT_NAME": "",
        "PATH_INFO": "/",
        "wsgi.input": io.BytesIO(body),
    }
    if body:
        env["CONTENT_LENGTH"] = str(len(body))
    for name, value in (headers or {}).items():
        env["HTTP_" + name.upper().replace("-", "_")] = value
    env.update(environ or {})
    setup_testing_defaults(env)
    seen: dict[str, Any] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        seen["status"] = int(status.split()[0])
        seen["headers"] = {k.lower(): v for k, v in response_headers}
        return lambda data: None

    iterable = (validator(app) if validate else app)(env, start_response)
    try:
        data = b"".join(iterable)
    finally:
        close = getattr(iterable, "close", None)
        if close is not None:
            close()
    return Reply(seen["status"], seen["headers"], data)


# -- raw sockets -------------------------------------------------------------------


def _host_port(url: str) -> tuple[str, int]:
    host, port = url.split("//", 1)[1].split(":")
    return host, int(port)


def stuck_socket(url: str, path: str) -> socket.socket:
    """A connection with a 4 KiB receive buffer that has sent its request and reads nothing yet."""
    host, port = _host_port(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(30)
    sock.connect((host, port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
    return sock


def read_all(sock: socket.socket, timeout: float = 60) -> bytes:
    """Everything until the server closes the connection (head included)."""
    deadline = time.monotonic() + timeout
    chunks = []
    while True:
        assert time.monotonic() < deadline, "the stream did not end"
        chunk = sock.recv(1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def dechunk(raw: bytes) -> bytes:
    """The body of a whole raw response, de-chunked; fails on a chunked body that was cut."""
    head, _, body = raw.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" not in head.lower():
        return body
    out, pos = [], 0
    while True:
        end = body.index(b"\r\n", pos)
        size = int(body[pos:end].split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(body[end + 2 : end + 2 + size])
        pos = end + 2 + size + 2


def half_closed(url: str, path: str) -> bytes:
    """Send the request, shut down the sending side, read the whole response body."""
    host, port = _host_port(url)
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        sock.shutdown(socket.SHUT_WR)
        return dechunk(read_all(sock, timeout=30))


def stats(url: str, key: str = "") -> dict[str, Any]:
    """``/stats`` of ``tests/apps/hostile_app.py``."""
    with urllib.request.urlopen(f"{url}/stats?key={key}", timeout=10) as reply:
        return json.loads(reply.read())  # type: ignore[no-any-return]


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


def ndjson_objects(body: bytes) -> list[dict[str, Any]]:
    """Every line a strict JSON object (no NaN, strict UTF-8, no lone surrogate)."""
    text = body.decode("utf-8")  # strict: invalid UTF-8 fails here
    assert text.endswith("\n"), f"NDJSON body does not end with a newline: {text[-80:]!r}"
    objects = []
    for number, line in enumerate(text[:-1].split("\n")):
        obj = json.loads(line, parse_constant=_no_constants)
        assert isinstance(obj, dict), f"line {number} is not an object: {line[:80]!r}"
        # Encodable as strict UTF-8: no lone surrogate smuggled in as \ud8xx escapes.
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
        objects.append(obj)
    return objects


# -- SSE: the EventSource parsing rules (HTML Living Standard, 9.2.6) ---------------

_SSE_LINES = re.compile("\r\n|\r|\n")


@dataclass
class SseStream:
    events: list[dict[str, str]] = field(default_factory=list)  # type, data, id
    retries: list[int] = field(default_factory=list)
    fields: dict[str, int] = field(default_factory=dict)  # every field name seen, counted
    comments: list[str] = field(default_factory=list)
    last_event_id: str = ""
    pending: bool = False  # data left undispatched at the end of the stream

    def of_type(self, kind: str) -> list[dict[str, str]]:
        return [e for e in self.events if e["type"] == kind]


def parse_sse(body: bytes) -> SseStream:
    """Interpret ``body`` exactly as a browser's EventSource would."""
    text = body.decode("utf-8")  # a browser would replace bad bytes; we refuse them
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
                stream.events.append(
                    {"type": event_type or "message", "data": payload[:-1], "id": stream.last_event_id}
                )
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
_VOID = frozenset({"meta", "link", "br", "img", "input", "hr", "wbr"})


@dataclass
class HtmlDocument:
    records: list[str]  # the text of each record span, in order
    classes: list[str]  # the class attribute of each record span
    drops: list[str]  # the text of each "lines dropped" span
    progress: list[str]
    end_status: str | None
    end_text: str
    traceback: str
    comments: list[str]
    tags: list[str]


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, dict[str, str | None]]] = []
        self.tags: list[str] = []
        self.comments: list[str] = []
        self.records: list[str] = []
        self.classes: list[str] = []
        self.drops: list[str] = []
        self.progress: list[str] = []
        self.traceback = ""
        self.end_status: str | None = None
        self.end_text = ""
        self.pre_closed = 0
        self.in_log = False
        self.stray: list[tuple[str, str]] = []  # text where no text belongs

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if not self.in_log:
            # The page's own head: sent before any record, so nothing here can come from one.
            if tag == "pre" and attributes.get("id") == "log":
                self.in_log = True
            if tag not in _VOID:
                self.stack.append((tag, attributes))
            return
        self.tags.append(tag)
        assert tag in LOG_ELEMENTS, f"unexpected element <{tag} {attributes}> after the log began"
        parent = self.stack[-1] if self.stack else None
        if tag in ("span", "label"):
            assert parent is not None and parent[0] == "pre" and parent[1].get("id") == "log", (
                f"<{tag} {attributes}> outside <pre id=log>: inside {parent}"
            )
            assert self.pre_closed == 0, "a record after the log was closed"
            kind = (attributes.get("class") or "").split()
            if "r" in kind and "tb" not in kind:
                self.records.append("")
                self.classes.append(attributes.get("class") or "")
            elif "tb" in kind:
                self.traceback = ""
            elif "drop" in kind:
                self.drops.append("")
            elif "pg" in kind:
                self.progress.append("")
            else:
                raise AssertionError(f"span with unexpected class {attributes}")
        if tag == "progress":
            assert parent is not None and parent[0] == "label", "a <progress> outside its label"
        if tag == "p":
            assert self.pre_closed == 1 and attributes.get("id") == "end", f"unexpected <p {attributes}>"
            self.end_status = attributes.get("data-status")
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
        if not self.in_log:
            return
        if not self.stack:
            if data.strip():
                self.stray.append(("document", data))
            return
        tag, attributes = self.stack[-1]
        kind = (attributes.get("class") or "").split()
        if tag == "span" and "r" in kind and "tb" not in kind:
            self.records[-1] += data
        elif tag == "span" and "tb" in kind:
            self.traceback += data
        elif tag == "span" and "drop" in kind:
            self.drops[-1] += data
        elif tag in ("label", "progress"):
            self.progress[-1] += data
        elif tag == "p":
            self.end_text += data
        elif data.strip():
            self.stray.append((tag, data))

    def handle_comment(self, data: str) -> None:
        if self.in_log:
            self.comments.append(data)

    def handle_decl(self, decl: str) -> None:
        assert decl.lower() == "doctype html", f"unexpected declaration {decl!r}"

    def handle_pi(self, data: str) -> None:
        raise AssertionError(f"processing instruction {data!r} in the page")

    def unknown_decl(self, data: str) -> None:
        raise AssertionError(f"unknown declaration {data!r} in the page")


def parse_html(body: bytes) -> HtmlDocument:
    """Walk the page; fail if any record made an element, a comment or text outside its span."""
    reader = _Reader()
    reader.feed(body.decode("utf-8"))
    reader.close()
    assert not reader.stack, f"elements left open: {[t for t, _ in reader.stack]}"
    assert reader.in_log, "no <pre id=log> in the page"
    assert reader.pre_closed == 1, "the log <pre> was not closed exactly once"
    assert not reader.stray, f"text outside any record: {reader.stray[:3]!r}"
    for comment in reader.comments:
        assert comment.strip() == "keepalive", f"a comment that is not a keep-alive: {comment[:80]!r}"
    return HtmlDocument(
        records=reader.records,
        classes=reader.classes,
        drops=reader.drops,
        progress=reader.progress,
        end_status=reader.end_status,
        end_text=reader.end_text,
        traceback=reader.traceback,
        comments=reader.comments,
        tags=reader.tags,
    )


# -- text ----------------------------------------------------------------------------

_SGR = re.compile("\x1b\\[[0-9;]*m")
_RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


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


# -- the process's resources -----------------------------------------------------------


def _handler_count() -> int:
    loggers = [logging.getLogger()] + [
        logger for logger in logging.Logger.manager.loggerDict.values() if isinstance(logger, logging.Logger)
    ]
    return sum(len(logger.handlers) for logger in loggers)


def snapshot() -> dict[str, int]:
    """Threads, file descriptors and logging handlers of this process now."""
    return {
        "threads": threading.active_count(),
        "fds": len(os.listdir("/proc/self/fd")),
        "handlers": _handler_count(),
    }
