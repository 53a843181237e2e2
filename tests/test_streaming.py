"""Lines reach a reading client while the operation is still running."""

from __future__ import annotations

import urllib.request
import uuid

import pytest

from tests.apps import handshake
from tests.servers import RawClient, gunicorn, wsgiref_server
from tests.wire import FORMATS, summary


def _handshake(base_url: str, fmt: str) -> bytes:
    key = uuid.uuid4().hex
    with RawClient(base_url, f"/op?format={fmt}&key={key}") as client:
        client.read_until(f"first {key}".encode())
        # Only now may the operation go on: it is still running, blocked.
        assert b"second" not in client.body
        with urllib.request.urlopen(f"{base_url}/release?key={key}", timeout=10) as reply:
            assert reply.status == 200
        body = client.read_to_end()
    assert client.status == 200
    assert f"second {key} released=True".encode() in body
    return body


@pytest.mark.parametrize("fmt", FORMATS)
def test_first_line_arrives_while_operation_runs_under_wsgiref(fmt: str) -> None:
    with wsgiref_server(handshake.application) as url:
        body = _handshake(url, fmt)
    assert summary(body, fmt)["status"] == "ok"


@pytest.mark.servers
def test_first_line_arrives_while_operation_runs_under_gunicorn_gthread() -> None:
    with gunicorn("tests.apps.handshake:application", worker_class="gthread", threads=8) as server:
        for fmt in FORMATS:
            _handshake(server.url, fmt)
