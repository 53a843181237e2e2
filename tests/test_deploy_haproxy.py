"""HAProxy (Debian's 2.6) with ``examples/haproxy.cfg`` in front of gunicorn, with and without ``http-no-delay``.

HAProxy passes a chunked stream on as it reads it. Without
``option http-no-delay`` it sends each chunk with ``MSG_MORE``, and the kernel
may hold a small one for up to 200 ms waiting for more: lines are late, not
held to the end. That delay is measured, not asserted (``docs/servers.md``
has the figure); what the tests prove is that every format passes while the
operation still waits for the test, with the option and without it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.nginx import assert_ended_ok, gunicorn_with
from tests.proxies import APP, Served, haproxy, live
from tests.servers import Program, RawClient

pytestmark = pytest.mark.servers


@pytest.fixture(scope="module")
def upstream() -> Iterator[Program]:
    with gunicorn_with("gunicorn.conf.py", APP) as server:
        yield server


@pytest.fixture(scope="module", params=[True, False], ids=["http-no-delay", "default-delay"])
def proxy(request: pytest.FixtureRequest, upstream: Program) -> Iterator[Served]:
    with haproxy(f"127.0.0.1:{upstream.port}", no_delay=request.param) as server:
        yield server


@pytest.mark.parametrize("fmt", ["text", "html", "sse", "ndjson"])
def test_stream_passes_haproxy_while_operation_runs(proxy: Served, fmt: str) -> None:
    key = uuid.uuid4().hex
    with RawClient(proxy.url, f"/ops/run?format={fmt}&key={key}") as client:
        body = live(client, key, proxy.url)
    assert client.status == 200, proxy.output()
    assert client.headers.get("transfer-encoding") == "chunked"
    assert f"line 3 of {key}".encode() in body
    assert_ended_ok(fmt, body)
