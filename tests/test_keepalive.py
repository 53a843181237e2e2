"""The first bytes leave at once, and silence is filled with keep-alives no reader mistakes for a log line.

The target blocks (bounded) before it logs anything, so whatever the client
receives meanwhile came from the response itself: the head first, then, after
``heartbeat`` seconds of silence, a keep-alive in the format's own comment form.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest

from tests.servers import RawClient
from tests.servers import wsgiref_server as serve
from tests.wire import ndjson_objects, parse_html, parse_sse, parse_text, records, summary
from wsgi_logstream import logstream

log = logging.getLogger("tests.keepalive")

# Where each format's head ends.
HEAD_END = {"text": b" --\n", "html": b'<pre id="log">\n', "sse": b": Log stream\n\n", "ndjson": b"}\n"}


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
        assert extra.replace(b"<!-- keepalive -->", b"") == b"", extra
    elif name == "sse":
        stream = parse_sse(extra)
        assert stream.events == [] and not stream.pending and stream.fields == {}, stream
        assert set(stream.comments) == {" keepalive"}, stream.comments
    else:
        assert ndjson_objects(extra) == [{"event": "keepalive"}] * extra.count(b"\n")


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
    assert [line for _, line in records(body, name)] == ["the only line"]
    assert summary(body, name)["status"] == "ok"
    if name == "text":
        text = parse_text(body)
        assert text.keepalives >= 1 and len(text.framing) == 2, text
    elif name == "html":
        comments = parse_html(body).comments
        assert comments and set(comments) == {" keepalive "}, comments
    elif name == "sse":
        stream = parse_sse(body)
        assert [e.type for e in stream.events] == ["message", "end"] and " keepalive" in stream.comments
    else:
        assert {"event": "keepalive"} in ndjson_objects(body)
