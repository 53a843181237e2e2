"""The first bytes leave at once, and silence is filled with keep-alives no reader mistakes for a log line.

The target blocks (bounded) before it logs anything, so whatever the client
receives meanwhile came from the response itself: the head first, then, after
``heartbeat`` seconds of silence, a keep-alive in the format's own comment form.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from html.parser import HTMLParser

import pytest
from servers import RawClient
from servers import wsgiref_server as serve

from tests.apps.core_client import parse_sse
from wsgi_logstream import logstream

log = logging.getLogger("tests.keepalive")

# Where each format's head ends.
HEAD_END = {"text": b" --\n", "html": b'<pre id="log">\n', "sse": b": Log stream\n\n", "ndjson": b"}\n"}


class _Html(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.comments: list[str] = []
        self.data: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_comment(self, data: str) -> None:
        self.comments.append(data)

    def handle_data(self, data: str) -> None:
        self.data.append(data)


def _html(text: str) -> _Html:
    parser = _Html()
    parser.feed(text)
    parser.close()
    return parser


def _read_past(client: RawClient, start: int, terminator: bytes, timeout: float = 10.0) -> None:
    """Read until ``terminator`` appears in the body after ``start`` (``read_until`` would find it in the head)."""
    deadline = time.monotonic() + timeout
    while terminator not in client.body[start:]:
        assert time.monotonic() < deadline, f"nothing after the head: {client.body[-200:]!r}"
        assert client.fill(deadline), "the connection closed"


def _assert_keepalive_only(name: str, extra: bytes) -> None:
    """``extra`` (what came after the head while the target was silent) holds no log line."""
    assert extra, "no keep-alive was sent"
    if name == "text":
        assert set(extra) == {ord("\n")}, extra
    elif name == "html":
        parsed = _html(extra.decode())
        assert parsed.tags == [] and parsed.comments, extra
        assert "".join(parsed.data).strip() == ""
    elif name == "sse":
        assert parse_sse(extra) == []
        assert all(line == b"" or line.startswith(b":") for line in extra.split(b"\n")), extra
    else:
        for line in extra.splitlines():
            assert json.loads(line) == {"event": "keepalive"}


@pytest.mark.parametrize("name", ["text", "html", "sse", "ndjson"])
def test_head_goes_out_at_once_and_silence_gets_a_keepalive_that_is_not_a_log_line(name: str) -> None:
    go = threading.Event()
    logged = threading.Event()

    def target() -> None:
        assert go.wait(30)
        log.info("the only line")
        logged.set()

    app = logstream(target, heartbeat=0.2, formatter="%(message)s")
    with serve(app) as url, RawClient(url, f"/?format={name}") as client:
        client.read_until(HEAD_END[name])
        assert client.status == 200
        head_length = client.body.index(HEAD_END[name]) + len(HEAD_END[name])
        assert not logged.is_set()
        # A keep-alive: more bytes while the target is still silent, up to its end.
        terminator = {"sse": b"\n\n", "html": b"-->"}.get(name, b"\n")
        _read_past(client, head_length, terminator)
        assert not logged.is_set()
        _assert_keepalive_only(name, client.body[head_length:])
        go.set()
        body = client.read_to_end()
    _assert_whole_stream(name, body)


def _assert_whole_stream(name: str, body: bytes) -> None:
    """Read as the format's consumer does, the stream holds one log line and the summary."""
    if name == "text":
        lines = body.decode().split("\n")
        assert "" in lines[1:-2], "the keep-alive empty line"
        content = [line for line in lines if line]
        assert content[1] == "the only line"
        assert content[2].startswith("-- ok ") and len(content) == 3
    elif name == "html":
        parsed = _html(body.decode())
        assert any("keepalive" in c for c in parsed.comments)
        lines = [a for tag, a in parsed.tags if tag == "span" and "r" in (a.get("class") or "").split()]
        assert len(lines) == 1
    elif name == "sse":
        events = parse_sse(body)
        assert [(e.type, e.data) for e in events[:1]] == [("message", "the only line")]
        assert [e.type for e in events] == ["message", "end"]
    else:
        objects = [json.loads(line) for line in body.splitlines()]  # every line is JSON
        assert [o["message"] for o in objects if o["event"] == "log"] == ["the only line"]
        assert {"event": "keepalive"} in objects
        assert objects[-1]["event"] == "end"
