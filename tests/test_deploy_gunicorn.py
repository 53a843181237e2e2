"""gunicorn with the example configs streams; the sync worker, for contrast, cuts a long stream.

Each run uses ``tests/apps/handshake.py``: its operation logs ``first K`` and
waits until the test, having read that line, requests ``/release?key=K``. A
pass therefore proves the line crossed gunicorn while the operation was
still blocked; buffering anywhere would make the test time out.
"""

from __future__ import annotations

import uuid

import pytest

from tests.nginx import assert_ended_ok, gunicorn_with, handshake
from tests.servers import RawClient, gunicorn, wait_until
from tests.wire import FORMATS

APP = "tests.apps.handshake:application"


def _streams_every_format(url: str) -> None:
    for fmt in FORMATS:
        key = uuid.uuid4().hex
        with RawClient(url, f"/op?format={fmt}&key={key}") as client:
            body = handshake(client, key, f"{url}/release?key={key}")
        assert client.status == 200
        assert client.headers.get("transfer-encoding") == "chunked"
        assert f"second {key} released=True".encode() in body
        assert_ended_ok(fmt, body)


@pytest.mark.servers
def test_gthread_config_streams_each_format_while_operation_runs() -> None:
    with gunicorn_with("gunicorn.conf.py", APP) as server:
        _streams_every_format(server.url)


@pytest.mark.servers
def test_gevent_config_streams_each_format_while_operation_runs() -> None:
    with gunicorn_with("gunicorn_gevent.conf.py", APP) as server:
        _streams_every_format(server.url)


@pytest.mark.servers
def test_sync_worker_is_killed_by_its_timeout_and_cuts_the_stream() -> None:
    """Why the examples never use ``sync``: a stream outlives ``--timeout`` and the worker dies.

    The sync worker tells the master it is alive only between requests. The
    operation here waits 30 s for a release that never comes, so after
    ``--timeout 2`` the master kills the worker mid-stream: the client has the
    first line, then the connection ends with no end summary.
    """
    key = uuid.uuid4().hex
    with gunicorn(APP, worker_class="sync", threads=1, extra=("--timeout", "2")) as server:
        with RawClient(server.url, f"/op?format=text&key={key}") as client:
            client.read_until(f"first {key}".encode())  # it does stream, while it lives
            try:
                body = client.read_to_end(timeout=20)
            except ConnectionResetError:
                body = client.body
        wait_until(lambda: "WORKER TIMEOUT" in server.output(), 10, "gunicorn to log the worker timeout")
    assert client.status == 200
    assert f"second {key}".encode() not in body
    last = body.strip(b"\n").rsplit(b"\n", 1)[-1]
    assert last.endswith(f"first {key}".encode()), f"expected the stream to stop after the first line: {body!r}"
    # The chunked body never got its last (empty) chunk: the response was cut, not ended.
    assert not client.raw.endswith(b"0\r\n\r\n")
