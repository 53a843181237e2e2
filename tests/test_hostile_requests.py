"""Bad requests: each gets a clear 4xx with a one-line ``text/plain`` reason, and runs nothing.

A rejected request must never start the operation (which may be expensive or
have side effects), so every case counts the target's runs. The same cases are
sent through a real ``wsgiref`` server on raw sockets, where the server, not
the test, builds the environ (a real ``Content-Length``, a real ``HEAD``).
"""

from __future__ import annotations

import logging
import socket
import threading
from collections import Counter
from typing import Iterator

import pytest

from tests.apps.targets import CountingTarget
from tests.inproc import Call, fetch
from tests.servers import RawClient, wait_until, wsgiref_server
from tests.wire import summary
from wsgi_logstream import logstream

log = logging.getLogger("tests.hostile.requests")

TRIED: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _print_counts() -> Iterator[None]:
    yield
    print("\n[requests] " + ", ".join(f"{key}: {count}" for key, count in sorted(TRIED.items())))


def _assert_rejected(reply: Call, status: int, *, mentions: str) -> None:
    assert reply.code == status, f"expected {status}, got {reply.code}: {reply.body[:200]!r}"
    assert reply.content_type == "text/plain; charset=utf-8"
    message = reply.body.decode("utf-8")
    assert message.endswith("\n") and "\n" not in message[:-1], f"not one line: {message!r}"
    assert len(message) < 200, f"not short: {message!r}"
    assert "Traceback" not in message and "File " not in message
    assert mentions.lower() in message.lower(), f"{message!r} does not say {mentions!r}"
    assert reply.header("content-length") == str(len(reply.body))
    TRIED[f"{status} {mentions}"] += 1


# (query, headers, method, body, status, what the message must mention)
BAD = {
    "unknown format": ("format=xml", {}, "GET", b"", 400, "unknown format"),
    "unknown format, long": ("format=" + "z" * 3000, {}, "GET", b"", 400, "unknown format"),
    "repeated format": ("format=text&format=sse", {}, "GET", b"", 400, "more than once"),
    "repeated format, same value": ("format=text&format=text", {}, "GET", b"", 400, "more than once"),
    "too many parameters": ("&".join(f"p{i}=1" for i in range(100)), {}, "GET", b"", 400, "too many"),
    "only application/json": ("", {"Accept": "application/json"}, "GET", b"", 406, "accept"),
    "only image types": ("", {"Accept": "image/png, image/*;q=0.8"}, "GET", b"", 406, "accept"),
    "every type refused": ("", {"Accept": "text/plain;q=0, text/html;q=0"}, "GET", b"", 406, "accept"),
    "query over 4096 bytes": ("x=" + "a" * 5000, {}, "GET", b"", 414, "query string"),
    "headers over 16 KiB": ("", {"X-Big": "b" * 17000}, "GET", b"", 431, "headers"),
    "many headers over 16 KiB": ("", {f"X-H{i}": "h" * 1000 for i in range(20)}, "GET", b"", 431, "headers"),
    "PUT": ("", {}, "PUT", b"", 405, "not allowed"),
    "DELETE": ("", {}, "DELETE", b"", 405, "not allowed"),
    "PATCH": ("", {}, "PATCH", b"", 405, "not allowed"),
    "OPTIONS": ("", {}, "OPTIONS", b"", 405, "not allowed"),
    "TRACE": ("", {}, "TRACE", b"", 405, "not allowed"),
    "GET with a body": ("format=text", {}, "GET", b"payload", 400, "must not carry a body"),
    "GET with a bad Content-Length": ("", {}, "GET", b"", 400, "content-length"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_request_is_a_short_plain_4xx_and_runs_nothing(case: str) -> None:
    query, headers, method, body, status, mentions = BAD[case]
    target = CountingTarget("tests.hostile.requests")
    environ = {"CONTENT_LENGTH": "twelve"} if case == "GET with a bad Content-Length" else None
    reply = fetch(
        logstream(target), query, method=method, headers=headers, body=body, extra=environ, validate=environ is None
    )
    _assert_rejected(reply, status, mentions=mentions)
    assert target.runs == 0
    if status == 405:
        assert {m.strip() for m in reply.header("allow").split(",")} == {"GET", "HEAD", "POST"}


def test_a_chunked_get_is_refused_as_a_body() -> None:
    target = CountingTarget("tests.hostile.requests")
    reply = fetch(logstream(target), headers={"Transfer-Encoding": "chunked"})
    _assert_rejected(reply, 400, mentions="must not carry a body")
    assert target.runs == 0


@pytest.mark.parametrize("fmt", ["text", "html", "sse", "ndjson"])
def test_head_sends_the_stream_headers_and_never_runs_the_target(fmt: str) -> None:
    target = CountingTarget("tests.hostile.requests")
    reply = fetch(logstream(target), f"format={fmt}", method="HEAD")
    assert reply.code == 200 and reply.body == b""
    assert reply.header("cache-control") == "no-store"
    assert target.runs == 0
    TRIED["HEAD"] += 1


@pytest.mark.parametrize(
    ("query", "headers"),
    [
        ("format=sse", {"Last-Event-ID": "3"}),
        ("format=sse", {"Last-Event-ID": ""}),
        ("", {"Accept": "text/event-stream", "Last-Event-ID": "0"}),
    ],
)
def test_last_event_id_on_a_plain_sse_stream_is_204_so_eventsource_stops(query: str, headers: dict[str, str]) -> None:
    target = CountingTarget("tests.hostile.requests")
    reply = fetch(logstream(target), query, headers=headers)
    assert reply.code == 204 and reply.body == b""
    assert reply.header("content-type") is None
    assert target.runs == 0
    TRIED["204 Last-Event-ID"] += 1


def test_last_event_id_on_other_formats_is_ignored_and_streams() -> None:
    target = CountingTarget("tests.hostile.requests")
    reply = fetch(logstream(target), "format=ndjson", headers={"Last-Event-ID": "3"})
    assert reply.code == 200 and target.runs == 1


def test_past_max_concurrent_a_request_gets_503_with_retry_after_and_runs_nothing() -> None:
    release = threading.Event()
    runs: list[int] = []

    def busy() -> None:
        runs.append(1)
        log.info("busy")
        release.wait(10)

    app = logstream(busy, max_concurrent=1)
    with wsgiref_server(app) as url, RawClient(url, "/?format=text") as first:
        first.read_until(b"busy")
        second = fetch(app, "format=text")
        _assert_rejected(second, 503, mentions="max_concurrent")
        assert second.header("retry-after") == "5"
        assert len(runs) == 1
        release.set()
        assert summary(first.read_to_end(), "text")["status"] == "ok"
    wait_until(lambda: app.running == 0, message="the operation to end")


# -- the same through a real server ---------------------------------------------------


def _exchange(url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` as raw bytes, read until the server closes; (status, headers, body)."""
    host, port = url.split("//", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    first, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(first.split()[1]), headers, body


def test_a_real_server_rejects_the_same_and_runs_nothing() -> None:
    target = CountingTarget("tests.hostile.requests")
    requests = {
        "GET with a body": (b"GET /?format=text HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 400),
        "PUT": (b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405),
        "406": (b"GET / HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n\r\n", 406),
        "414": (b"GET /?q=" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        "431": (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 17000 + b"\r\n\r\n", 431),
        "204": (b"GET /?format=sse HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 4\r\n\r\n", 204),
        "HEAD": (b"HEAD /?format=html HTTP/1.1\r\nHost: x\r\n\r\n", 200),
    }
    with wsgiref_server(logstream(target)) as url:
        for name, (request, status) in requests.items():
            got, headers, body = _exchange(url, request.replace(b"Host: x\r\n", b"Host: x\r\nConnection: close\r\n"))
            assert got == status, f"{name}: {got} {body[:200]!r}"
            if status not in (200, 204):
                assert headers["content-type"] == "text/plain; charset=utf-8", name
                assert body.count(b"\n") == 1 and b"Traceback" not in body, name
            else:
                assert body == b"", name
            TRIED[f"real server {status}"] += 1
    assert target.runs == 0
