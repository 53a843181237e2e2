"""waitress streams with the settings the README's "Deploying" section gives; the old ``send_bytes`` default did not.

waitress sends what the application yields as soon as ``send_bytes`` bytes
are waiting; that setting has defaulted to 1 (and been deprecated) since
waitress 1.3, so a stream flows with no setting at all. Before 1.3 it was
18000, and a config that still sets it so holds a log stream back until the
operation ends: the contrast test shows it. The handshake (``tests/apps/handshake.py``)
releases the operation only after the client has read its first line.
"""

from __future__ import annotations

import uuid

import pytest

from tests.nginx import assert_ended_ok, handshake
from tests.servers import Program, RawClient, free_port, require_program
from tests.wire import FORMATS

APP = "tests.apps.handshake:application"


def waitress(*settings: str) -> Program:
    """``waitress-serve`` on a free loopback port with the deployment guide's settings, plus ``settings``."""
    port = free_port()
    args = [
        require_program("waitress-serve"),
        f"--listen=127.0.0.1:{port}",
        "--threads=16",  # one per open stream, plus the site's own requests
        "--asyncore-use-poll",  # poll(), not select(): no 1024-descriptor ceiling
        *settings,
        APP,
    ]
    return Program(args, port)


@pytest.mark.servers
def test_waitress_streams_each_format_while_operation_runs() -> None:
    with waitress() as server:
        for fmt in FORMATS:
            key = uuid.uuid4().hex
            with RawClient(server.url, f"/op?format={fmt}&key={key}") as client:
                body = handshake(client, key, f"{server.url}/release?key={key}")
            assert client.status == 200
            assert f"second {key} released=True".encode() in body
            assert_ended_ok(fmt, body)


@pytest.mark.servers
def test_waitress_with_the_old_send_bytes_default_holds_the_stream_back() -> None:
    """Contrast: ``--send-bytes=18000`` (the pre-1.3 default) sends nothing until the operation ends.

    The operation is blocked for up to 30 s until released, so two seconds
    without the first line show waitress holding it (the one bounded negative
    wait here); once released, everything arrives at once.
    """
    key = uuid.uuid4().hex
    with waitress("--send-bytes=18000") as server, RawClient(server.url, f"/op?format=text&key={key}") as client:
        with pytest.raises(AssertionError, match="timed out"):
            client.read_until(f"first {key}".encode(), timeout=2)
        assert client.raw == b""  # not even the status line
        with RawClient(server.url, f"/release?key={key}") as release:
            release.read_to_end()
        body = client.read_to_end()
    assert client.status == 200
    assert_ended_ok("text", body)
