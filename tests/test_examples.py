"""Each example runs as its docstring says, streams its operation, and leaves the site's own pages alone.

Every example is started as a real server: with its own ``python examples/…``
command where it has one, and under gunicorn with ``examples/gunicorn.conf.py``.
A stream is proven live without timing: the operation is asked to wait 30 s
after its first line (``delay=30``), so that line can only be read, within
the 15 s bound, if it was sent while the operation was still running.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import pytest

from tests.nginx import EXAMPLES, assert_ended_ok, gunicorn_with
from tests.servers import Program, RawClient, free_port


@dataclass(frozen=True)
class Example:
    name: str
    app: str  # for gunicorn
    stream: str  # the mounted operation
    size: str  # the query parameter for the operation's number of steps
    first: str  # its first line
    last: str  # its last line when it succeeds
    page: str  # text on the site's own index page


EXAMPLES_UNDER_TEST = [
    Example(
        "plain_wsgi",
        "examples.plain_wsgi:application",
        "/ops/deploy",
        "hosts",
        "deploying release 42 to 1 hosts",
        "release 42 is live on 2 hosts",
        "Run the pretend deploy",
    ),
]
# The Django project and the Flask app need a login: tests/test_django_example.py and
# tests/test_flask_example.py run them under gunicorn (and Flask as its docstring says).


def _get(url: str, path: str) -> tuple[int, bytes]:
    with RawClient(url, path) as client:
        body = client.read_to_end()
    return client.status, body


def _check(url: str, example: Example) -> None:
    # The operation streams: its first line arrives while it waits 30 s before the next.
    with RawClient(url, f"{example.stream}?{example.size}=1&delay=30") as client:
        client.read_until(example.first.encode(), timeout=15)
        assert client.status == 200
        assert client.headers["content-type"] == "text/plain; charset=utf-8"
        assert b"-- ok" not in client.body
    # Run to the end, in each format.
    for fmt in ("text", "html", "sse", "ndjson"):
        status, body = _get(url, f"{example.stream}?{example.size}=2&delay=0&format={fmt}")
        assert status == 200
        assert example.last.encode() in body
        assert_ended_ok(fmt, body)
    # The site's own pages pass through the middleware untouched.
    status, body = _get(url, "/")
    assert status == 200 and example.page.encode() in body
    status, body = _get(url, "/no-such-page")
    assert status == 404


@pytest.mark.servers
@pytest.mark.parametrize("example", EXAMPLES_UNDER_TEST, ids=lambda e: e.name)
def test_example_streams_under_gunicorn(example: Example) -> None:
    # A short graceful timeout: the live-stream check leaves an operation that
    # notices its reader left only at its next heartbeat.
    with gunicorn_with("gunicorn.conf.py", example.app, "--graceful-timeout", "1") as server:
        _check(server.url, example)


@pytest.mark.servers
@pytest.mark.parametrize("example", EXAMPLES_UNDER_TEST[:1], ids=lambda e: e.name)
def test_example_streams_when_run_as_its_docstring_says(example: Example) -> None:
    port = free_port()
    with Program([sys.executable, str(EXAMPLES / f"{example.name}.py"), str(port)], port) as server:
        _check(server.url, example)


@pytest.mark.servers
def test_plain_example_runs_under_gevent_config() -> None:
    example = EXAMPLES_UNDER_TEST[0]
    with gunicorn_with("gunicorn_gevent.conf.py", example.app, "--graceful-timeout", "1") as server:
        _check(server.url, example)


def _post(url: str, path: str) -> tuple[int, dict[str, str]]:
    with RawClient(url, path, method="POST", headers={"Content-Length": "0"}) as client:
        client.read_to_end()
    return client.status, client.headers


@pytest.mark.servers
def test_jobs_example_runs_on_after_its_viewer_left_and_can_be_cancelled() -> None:
    with gunicorn_with("gunicorn.conf.py", "examples.jobs_app:application") as server:
        status, headers = _post(server.url, "/import?rows=3&delay=30")
        assert status == 303
        job = headers["location"]
        assert job.startswith("/import/")
        # A viewer reads the first row's wait begin, then leaves.
        with RawClient(server.url, job) as client:
            client.read_until(b"importing 3 rows", timeout=15)
        # Another comes back: the same job, from its first line, still running.
        with RawClient(server.url, f"{job}?format=ndjson") as client:
            client.read_until(b"importing 3 rows", timeout=15)
            assert b'"event":"end"' not in client.body
            status, _ = _post(server.url, f"{job}/cancel")
            assert status == 303
            body = client.read_to_end()
        assert b"cancelled before row 1" in body
        assert b'"status":"cancelled"' in body
        # A short one runs to its end; its whole log is there afterwards.
        status, headers = _post(server.url, "/import?rows=2&delay=0")
        with RawClient(server.url, headers["location"] + "?format=text") as client:
            body = client.read_to_end()
        assert b"row 2 stored" in body
        assert_ended_ok("text", body)
        status, body = _get(server.url, "/")
        assert status == 200 and b"Imports" in body


def test_jobs_example_runs_as_its_docstring_says() -> None:
    port = free_port()
    with Program([sys.executable, "examples/jobs_app.py", str(port)], port) as server:
        status, headers = _post(server.url, "/import?rows=2&delay=0")
        assert status == 303
        with RawClient(server.url, headers["location"] + "?format=sse") as client:
            body = client.read_to_end()
        assert b"row 2 stored" in body
        assert_ended_ok("sse", body)
