"""Jobs over a real threaded server: many viewers, slow viewers, viewers who leave and come back.

Every viewer here is a raw socket (``servers.RawClient``), so a test controls
exactly what it has read and when it hangs up. The server is ``wsgiref`` with a
thread per request (``servers.wsgiref_server``). Jobs wait on events the test
sets, with bounds; the server side is watched through a small middleware that
notes when each response starts and when the server closes it.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from typing import Any, Callable, Iterable, Iterator

from tests.servers import RawClient, wait_until, wsgiref_server
from tests.wire import parse_sse, parse_text, records
from wsgi_logstream import jobs, wait_cancelled
from wsgi_logstream.jobs import JobsApp

log = logging.getLogger("tests.jobs.servers")


class Watched:
    """Middleware: which responses the app has returned, and which the server has closed."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.started: list[str] = []
        self.closed: list[str] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        name = f"{environ['PATH_INFO']}?{environ.get('QUERY_STRING', '')}"
        result = self.app(environ, start_response)
        self.started.append(name)
        return _Closing(result, lambda: self.closed.append(name))


class _Closing:
    def __init__(self, result: Iterable[bytes], on_close: Callable[[], None]) -> None:
        self._result = result
        self._on_close = on_close

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._result)

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            self._on_close()


def held(first: int, then: int, gate: threading.Event, *, width: int = 0) -> Callable[[], None]:
    """A target: ``line 001`` .. ``line <first>``, a wait for ``gate``, then lines up to ``first + then``.

    ``width`` pads each line to that many characters, to move a lot of bytes.
    """

    def target() -> None:
        for i in range(1, first + 1):
            log.info("line %03d%s", i, "." * width)
        assert gate.wait(20), "the test never released the job"
        for i in range(first + 1, first + then + 1):
            log.info("line %03d%s", i, "." * width)

    return target


def _app(target: Callable[..., Any], **options: Any) -> JobsApp:
    options.setdefault("formatter", "%(message)s")
    return jobs(target, **options)


def _expected(count: int) -> list[str]:
    return [f"line {i:03d}" for i in range(1, count + 1)]


def test_several_viewers_at_once_each_get_every_line_in_order_exactly_once() -> None:
    gate = threading.Event()
    app = _app(held(50, 50, gate))
    job = app.start()
    with wsgiref_server(app) as url:
        viewers = [(fmt, RawClient(url, f"/{job.id}?format={fmt}")) for fmt in ("ndjson", "sse", "sse", "text")]
        try:
            for _, client in viewers:
                client.read_until(b"line 050")
            gate.set()  # only now, with every viewer mid-stream, does the job go on
            bodies = [(fmt, client.read_to_end()) for fmt, client in viewers]
        finally:
            for _, client in viewers:
                client.close()
    assert job.wait(10) and job.status == "ok"
    for fmt, body in bodies:
        if fmt == "text":
            assert parse_text(body).lines == _expected(100)
            assert body.decode().splitlines()[-1].startswith("-- ok")
        else:
            got = records(body, fmt)
            assert [seq for seq, _ in got] == list(range(1, 101)), fmt
            assert [line for _, line in got] == _expected(100), fmt


def _largest_send_buffer() -> int:
    """The most a TCP send buffer may grow to here (Linux autotuning), 4 MB if unknown."""
    try:
        with open("/proc/sys/net/ipv4/tcp_wmem") as limits:
            return max(int(limits.read().split()[2]), 4 << 20)
    except (OSError, ValueError, IndexError):
        return 4 << 20


def test_a_viewer_that_never_reads_slows_neither_the_job_nor_another_viewer() -> None:
    gate = threading.Event()
    lines = 2 * _largest_send_buffer() // 1000  # 1 KB lines: twice what the sockets' buffers can hold
    jobs_app = _app(held(1, lines - 1, gate, width=1000))
    app = Watched(jobs_app)
    job = jobs_app.start()
    with wsgiref_server(app) as url:
        host, port = url.rsplit("//", 1)[1].split(":")
        slow = socket.socket()
        try:
            slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            slow.connect((host, int(port)))
            slow.sendall(f"GET /{job.id}?format=text HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            with RawClient(url, f"/{job.id}?format=ndjson") as fast:
                wait_until(lambda: len(app.started) == 2, 10, "both viewers to be streaming")
                gate.set()
                assert job.wait(30), "the job waited for a viewer"
                body = fast.read_to_end(60)
                # The fast viewer has everything; the slow one has read nothing and its response is still open.
                assert app.closed == [f"/{job.id}?format=ndjson"]
        finally:
            slow.close()
        wait_until(lambda: len(app.closed) == 2, 20, "the server to notice the slow viewer left")
    assert job.status == "ok"
    got = records(body, "ndjson")
    assert [seq for seq, _ in got] == list(range(1, lines + 1))
    assert json.loads(body.decode().splitlines()[-1])["status"] == "ok"


def test_a_viewer_cut_off_mid_stream_resumes_with_last_event_id_and_misses_nothing() -> None:
    gate = threading.Event()
    app = _app(held(30, 30, gate))
    job = app.start()
    with wsgiref_server(app) as url:
        with RawClient(url, f"/{job.id}?format=sse") as first:
            body = first.read_until(b"line 030")
        # The connection dropped somewhere inside the bytes sent: the client has only a prefix,
        # its last event perhaps half received (EventSource drops an unfinished event).
        prefix = body[: len(body) // 2]
        seen = parse_sse(prefix).events
        last_id = seen[-1].id
        assert 0 < int(last_id) < 30
        with RawClient(url, f"/{job.id}?format=sse", headers={"Last-Event-ID": last_id}) as second:
            second.read_until(b"line 030")
            gate.set()  # the rest is live
            rest = parse_sse(second.read_to_end()).events
    records = [(int(e.id), e.data) for e in seen + rest if e.type == "message"]
    assert [seq for seq, _ in records] == list(range(1, 61))
    assert [line for _, line in records] == _expected(60)
    assert rest[-1].type == "end" and json.loads(rest[-1].data)["status"] == "ok"


def test_the_job_runs_on_when_every_viewer_has_left() -> None:
    gate = threading.Event()
    jobs_app = _app(held(1, 2, gate), heartbeat=0.05)
    app = Watched(jobs_app)
    job = jobs_app.start()
    with wsgiref_server(app) as url:
        for fmt in ("text", "sse"):
            with RawClient(url, f"/{job.id}?format={fmt}") as viewer:
                viewer.read_until(b"line 001")
        # The server finds out on its next write (a keep-alive): wait until it has let go of both.
        wait_until(lambda: len(app.closed) == 2, 10, "the server to close both responses")
        assert job.status == "running"
        gate.set()
        assert job.wait(10) and job.status == "ok"
        with RawClient(url, f"/{job.id}?format=text") as later:
            assert parse_text(later.read_to_end()).lines == _expected(3)


def test_cancel_over_http_ends_the_job_and_tells_its_viewers() -> None:
    def target() -> None:
        log.info("line 001")
        log.info("stopped=%s", wait_cancelled(20))

    app = _app(target)
    job = app.start()
    with wsgiref_server(app) as url, RawClient(url, f"/{job.id}?format=sse") as viewer:
        viewer.read_until(b"line 001")
        with RawClient(url, f"/{job.id}/cancel", method="POST", headers={"Content-Length": "0"}) as cancel:
            cancel.read_to_end()
        assert cancel.status == 303 and cancel.headers["location"] == f"/{job.id}"
        events = parse_sse(viewer.read_to_end()).events
    assert job.wait(10) and job.status == "cancelled"
    assert [e.data for e in events if e.type == "message"] == ["line 001", "stopped=True"]
    assert json.loads(events[-1].data)["status"] == "cancelled"


def test_unknown_jobs_bad_resume_points_and_finished_reconnects_answer_404_400_204() -> None:
    app = _app(lambda: log.info("line 001"))
    job = app.start()
    assert job.wait(10)
    end_id = str(job.record.next_seq)
    cases = [
        ("/AAAAAAAAAAAAAAAAAAAAAA?format=text", {}, 404),
        (f"/{job.id}?format=text&since=abc", {}, 400),
        (f"/{job.id}?format=text&since=99", {}, 400),
        (f"/{job.id}?format=sse", {"Last-Event-ID": "-1"}, 400),
        (f"/{job.id}?format=sse", {"Last-Event-ID": end_id}, 204),
        (f"/{job.id}?format=sse", {"Last-Event-ID": "0"}, 200),
    ]
    with wsgiref_server(app) as url:
        for path, headers, status in cases:
            with RawClient(url, path, headers=headers) as client:
                body = client.read_to_end()
            assert client.status == status, (path, headers, body)
            if status == 204:
                assert body == b""
