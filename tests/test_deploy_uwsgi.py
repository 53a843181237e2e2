"""uWSGI (Debian's, with its python3 plugin): alone, behind nginx's ``uwsgi_pass``, and without threads.

With ``examples/uwsgi.ini`` (threads on) every format streams live through
uWSGI's HTTP router (``--http``) and straight into the worker
(``--http-socket``), and a job goes on after the ``POST`` that started it.
Behind nginx (``examples/nginx-uwsgi.conf``), ``uwsgi_pass`` honours
``X-Accel-Buffering: no`` with buffering and gzip left on; told to ignore the
header, it holds the stream to the end.

Started as its docs begin (no ``--enable-threads``, no ``--threads``), uWSGI
never lets a job's thread run once its request has been answered: the tests
show the job frozen until someone watches it, and that
:func:`wsgi_logstream.hosting.threads_disabled_reason` sees it.

Liveness is proven as in ``tests/test_deploy_nginx.py``: the operation logs
``first K`` and waits for ``/release?key=K``, which the test asks only after
reading that line.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import pytest

from tests.nginx import Nginx, assert_ended_ok, handshake
from tests.proxies import EXAMPLES, GzipClient, Served, assert_held, post, program, start_job, uwsgi
from tests.servers import RawClient
from tests.wire import FORMATS

BINDS = {"http": ("--http", "127.0.0.1:{port}"), "http-socket": ("--http-socket", "127.0.0.1:{port}")}

pytestmark = pytest.mark.servers


@pytest.fixture(scope="module", params=sorted(BINDS))
def threaded(request: pytest.FixtureRequest) -> Iterator[Served]:
    with uwsgi(*BINDS[request.param]) as server:
        yield server


@pytest.fixture(scope="module")
def bare() -> Iterator[Served]:
    """uWSGI as its quick start runs it: no ini, so no threads."""
    with uwsgi("--http-socket", "127.0.0.1:{port}", ini=False) as server:
        yield server


@pytest.mark.parametrize("fmt", FORMATS)
def test_stream_passes_uwsgi_while_operation_runs(threaded: Served, fmt: str) -> None:
    key = uuid.uuid4().hex
    with RawClient(threaded.url, f"/ops/run?format={fmt}&key={key}") as client:
        body = handshake(client, key, f"{threaded.url}/release?key={key}")
    assert client.status == 200, threaded.output()
    for number in (1, 2, 3):
        assert f"line {number} of {key}".encode() in body
    assert_ended_ok(fmt, body)


def test_a_job_streams_live_through_uwsgi_with_threads(threaded: Served) -> None:
    key = uuid.uuid4().hex
    job = start_job(threaded.url, key)
    with RawClient(threaded.url, f"{job}?format=text") as client:
        body = handshake(client, key, f"{threaded.url}/release?key={key}")
    assert_ended_ok("text", body)


def _freeze_job(url: str) -> tuple[socket.socket, str]:
    """Start the site's freeze job aimed at a new listening socket; the socket and the job's path."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    try:
        with RawClient(url, f"/start-freeze?port={port}") as client:
            path = client.read_to_end().decode().strip()
        assert client.status == 200, path
    except BaseException:
        listener.close()
        raise
    return listener, path


def _done_within(listener: socket.socket, conn: socket.socket | None, seconds: float) -> tuple[socket.socket, bool]:
    """Accept the job's connection if need be, send it its byte, and say whether ``done`` came back in time."""
    if conn is None:
        listener.settimeout(seconds)
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            raise AssertionError("the job never connected") from None
        conn.sendall(b"!")
    conn.settimeout(seconds)
    try:
        return conn, conn.recv(4) == b"done"
    except TimeoutError:
        return conn, False


def test_with_threads_a_job_runs_after_its_request_ended(threaded: Served) -> None:
    listener, _ = _freeze_job(threaded.url)
    with listener:
        conn, done = _done_within(listener, None, 10)
        conn.close()
    assert done, "the job did not answer although nobody else was being served"


def test_without_threads_a_job_freezes_until_someone_watches_it(bare: Served) -> None:
    """The issue's finding: no error anywhere, the job just stops until a request runs Python code.

    Its response read, the job may have connected (its thread got the GIL
    while the request was still running) or not; either way it does not
    answer the byte within 2 s. Once a viewer opens its stream, it answers.
    """
    listener, path = _freeze_job(bare.url)
    conn = None
    with listener:
        listener.settimeout(2)
        try:
            conn, _ = listener.accept()
            conn.sendall(b"!")
            conn.settimeout(2)
            with pytest.raises(socket.timeout):
                conn.recv(4)
        except TimeoutError:
            pass  # not even connected: frozen before that
        with RawClient(bare.url, f"{path}?format=text") as viewer:
            viewer.read_until(b"-- Freeze")  # the viewer's request now runs Python, and lets the job's thread in
            conn, done = _done_within(listener, conn, 10)
            body = viewer.read_to_end()
        conn.close()
    assert done
    assert_ended_ok("text", body)


def test_hosting_says_why_jobs_would_freeze_under_uwsgi_without_threads(bare: Served, threaded: Served) -> None:
    with RawClient(bare.url, "/hosting") as client:
        reason = client.read_to_end().decode()
    assert "--enable-threads" in reason
    with RawClient(threaded.url, "/hosting") as client:
        assert client.read_to_end() == b"None\n"


def test_without_threads_starting_a_job_answers_503_saying_how_to_fix_it(bare: Served) -> None:
    reply = post(bare.url, f"/jobs/?key={uuid.uuid4().hex}")
    assert reply.status == 503
    assert b"--enable-threads" in reply.body


def test_harakiri_cuts_a_stream_with_no_end_summary() -> None:
    """``harakiri`` kills the worker mid-stream: the client sees the stream stop, with no end line."""
    key = uuid.uuid4().hex
    with (
        uwsgi("--http-socket", "127.0.0.1:{port}", extra=("--harakiri", "2")) as server,
        RawClient(server.url, f"/ops/run?format=text&key={key}") as client,
    ):
        client.read_until(f"first {key}".encode())
        body = client.read_to_end()  # never released: only harakiri ends it (after 2 s)
        assert "HARAKIRI" in server.output()
    assert b"-- ok" not in body and b"-- error" not in body


@pytest.fixture(scope="module")
def behind_nginx() -> Iterator[Nginx]:
    program("nginx")
    with (
        uwsgi("--socket", "127.0.0.1:{port}") as upstream,
        Nginx(f"127.0.0.1:{upstream.port}", conf=EXAMPLES / "nginx-uwsgi.conf") as proxy,
    ):
        yield proxy


@pytest.mark.parametrize("fmt", FORMATS)
def test_stream_passes_nginx_uwsgi_pass_with_buffering_and_gzip_on(behind_nginx: Nginx, fmt: str) -> None:
    key = uuid.uuid4().hex
    url = behind_nginx.url
    with GzipClient(url, f"/ops/run?format={fmt}&key={key}", {"Accept-Encoding": "gzip"}) as client:
        body = handshake(client, key, f"{url}/release?key={key}")
    assert client.status == 200, behind_nginx.errors()
    assert "x-accel-buffering" not in client.headers  # nginx acted on it
    if fmt != "html":  # gzip_types lists the stream types; text/html is always compressed
        assert client.headers.get("content-encoding") == "gzip"
    assert_ended_ok(fmt, body)


def test_uwsgi_pass_told_to_ignore_x_accel_buffering_holds_the_stream_to_the_end() -> None:
    program("nginx")
    key = uuid.uuid4().hex
    with (
        uwsgi("--socket", "127.0.0.1:{port}") as upstream,
        Nginx(
            f"127.0.0.1:{upstream.port}",
            conf=EXAMPLES / "nginx-uwsgi.conf",
            http_extra=("uwsgi_ignore_headers X-Accel-Buffering;",),
        ) as proxy,
        RawClient(proxy.url, f"/ops/run?format=text&key={key}") as client,
    ):
        assert_held(client, f"first {key}".encode())
        assert client.body == b""
        with RawClient(proxy.url, f"/release?key={key}") as release:
            release.read_to_end()
        body = client.read_to_end()
    assert_ended_ok("text", body)


@pytest.mark.parametrize("ini", [True, False], ids=["example-ini", "threads-only"])
def test_requests_iter_lines_through_uwsgi_http_router_is_live_only_with_auto_chunked(ini: bool) -> None:
    """``http-auto-chunked`` (the example's) lets ``requests``' default ``iter_lines()`` read lines live.

    Without it the router sends neither length nor chunks, and ``iter_lines()``
    waits for 512 bytes that cannot come before the release: 2 s without a
    line is that wait, not a slow machine.
    """
    requests = pytest.importorskip("requests")
    key = uuid.uuid4().hex
    threads = () if ini else ("--threads", "4")  # so that /release is served while the stream waits
    with uwsgi("--http", "127.0.0.1:{port}", ini=ini, extra=threads) as server:
        try:
            url = f"{server.url}/ops/run?format=text&key={key}"
            with requests.get(url, stream=True, timeout=(5, 2)) as response:
                chunked = response.headers.get("transfer-encoding") == "chunked"
                assert chunked == ini, response.headers
                lines = response.iter_lines()
                if ini:
                    assert any(line.decode().endswith(f"first {key}") for line in lines)
                else:
                    with pytest.raises(requests.exceptions.ConnectionError, match="timed out"):
                        assert not any(line.decode().endswith(f"first {key}") for line in lines)
        finally:
            with RawClient(server.url, f"/release?key={key}") as release:
                release.read_to_end()
