"""Caddy (Debian's 2.6) with ``examples/Caddyfile`` in front of gunicorn: with and without ``encode gzip``.

``reverse_proxy`` alone passes every format at once. ``encode gzip`` decides
on a response's first write: over 512 bytes it compresses, and Caddy 2.6
never flushes its gzip writer, so the response is held to its end; under 512
bytes it leaves the response alone. The text, SSE and NDJSON streams already
start with a small write; the HTML page (whose first write was its 20 KB head)
and a job's viewer pass once every stream's first write is small.
``wsgi-logstream check`` through the same Caddy must agree with the real page.

Liveness: the operation logs ``first K`` and waits for ``/release?key=K``,
which the test asks only after reading that line through Caddy.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
import zlib
from collections.abc import Iterator

import pytest

from tests.apps.deploy_site import PAGE
from tests.nginx import assert_ended_ok, gunicorn_with
from tests.proxies import APP, GzipClient, Served, caddy, live, start_job
from tests.servers import Program, RawClient, wait_until

pytestmark = pytest.mark.servers


@pytest.fixture(scope="module")
def upstream() -> Iterator[Program]:
    with gunicorn_with("gunicorn.conf.py", APP) as server:
        yield server


@pytest.fixture(scope="module")
def plain(upstream: Program) -> Iterator[Served]:
    with caddy(f"127.0.0.1:{upstream.port}", encode="off") as proxy:
        yield proxy


@pytest.fixture(scope="module")
def except_streams(upstream: Program) -> Iterator[Served]:
    with caddy(f"127.0.0.1:{upstream.port}", encode="except-streams") as proxy:
        yield proxy


@pytest.fixture(scope="module")
def encoding(upstream: Program) -> Iterator[Served]:
    with caddy(f"127.0.0.1:{upstream.port}") as proxy:
        yield proxy


def _stream(proxy: Served, fmt: str) -> tuple[GzipClient, bytes]:
    key = uuid.uuid4().hex
    with GzipClient(proxy.url, f"/ops/run?format={fmt}&key={key}", {"Accept-Encoding": "gzip"}) as client:
        body = live(client, key, proxy.url)
    assert client.status == 200, proxy.output()
    assert f"line 3 of {key}".encode() in body
    assert_ended_ok(fmt, body)
    return client, body


@pytest.mark.parametrize("fmt", ["text", "html", "sse", "ndjson"])
def test_stream_passes_caddy_reverse_proxy_while_operation_runs(plain: Served, fmt: str) -> None:
    client, _ = _stream(plain, fmt)
    assert "content-encoding" not in client.headers


@pytest.mark.parametrize(
    "fmt",
    ["text", "html", "sse", "ndjson"],
)
def test_stream_passes_caddy_encode_gzip_while_operation_runs(encoding: Served, fmt: str) -> None:
    _stream(encoding, fmt)


def test_html_page_and_job_viewer_pass_caddy_when_encode_leaves_the_stream_paths_out(except_streams: Served) -> None:
    """The workaround in docs/servers.md for Caddy 2.6: ``encode`` on, but not for the stream paths."""
    client, _ = _stream(except_streams, "html")
    assert "content-encoding" not in client.headers
    key = uuid.uuid4().hex
    job = start_job(except_streams.url, key)
    with GzipClient(except_streams.url, job, {"Accept-Encoding": "gzip", "Accept": "text/html"}) as viewer:
        body = live(viewer, key, except_streams.url)
    assert_ended_ok("html", body)


@pytest.mark.parametrize("proxy", ["encoding", "except_streams"])
def test_caddy_encode_gzip_compresses_the_site_pages(proxy: str, request: pytest.FixtureRequest) -> None:
    """The contrast that gives the stream tests their meaning: ``encode`` is on and compresses a page."""
    encoding: Served = request.getfixturevalue(proxy)
    with RawClient(encoding.url, "/page", {"Accept-Encoding": "gzip"}) as client:
        raw = client.read_to_end()
    assert client.headers.get("content-encoding") == "gzip"
    assert zlib.decompress(raw, wbits=31) == PAGE


def test_job_viewer_with_history_passes_caddy_encode_gzip_while_the_job_runs(encoding: Served) -> None:
    key = uuid.uuid4().hex
    job = start_job(encoding.url, key)

    def logged() -> bool:
        with RawClient(encoding.url, "/jobs/?format=json") as listing:
            jobs = json.loads(listing.read_to_end())["jobs"]
        return any(item["id"] == job.rsplit("/", 1)[1] and item["records"] >= 1 for item in jobs)

    wait_until(logged, 10, "the job's first line")
    with GzipClient(encoding.url, job, {"Accept-Encoding": "gzip", "Accept": "text/html"}) as client:
        body = live(client, key, encoding.url)
    assert_ended_ok("html", body)


def _page_is_live(proxy: Served) -> bool:
    try:
        _stream(proxy, "html")
    except AssertionError:
        return False
    return True


def test_check_through_caddy_encode_agrees_with_the_real_page(encoding: Served) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wsgi_logstream", "check", f"{encoding.url}/ops/run?format=html", "--lines", "5"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1"},
    )
    page_live = _page_is_live(encoding)
    assert result.returncode == (0 if page_live else 1), (page_live, result.stdout, result.stderr)
