"""nginx with ``examples/nginx.conf`` in front of gunicorn: streams pass, gzip included, buffering left on.

The example config leaves ``proxy_buffering`` on and gzip on for the whole
site. These tests prove that the library's ``X-Accel-Buffering: no`` header
alone is what lets each format through while the operation is still running
(and, for contrast, that nginx does hold the stream back once told to ignore
that header), that gzip compresses a stream without delaying it, that the
site's ordinary pages are still buffered and gzipped, and that 500 streams at
once through nginx to a gevent worker stay apart and leave nothing behind.

The operation (``tests/nginx.py``) logs ``first K`` and waits until the test,
having read that line through nginx, asks ``/release?key=K``.
"""

from __future__ import annotations

import contextlib
import json
import resource
import uuid
import zlib
from collections.abc import Iterator

import psutil
import pytest

from tests.nginx import PAGE, Nginx, assert_ended_ok, gunicorn_with, handshake
from tests.proxies import GzipClient
from tests.servers import RawClient, wait_until
from tests.wire import FORMATS, ndjson_objects

APP = "tests.nginx:application"


@pytest.fixture(scope="module")
def site() -> Iterator[Nginx]:
    with gunicorn_with("gunicorn.conf.py", APP) as upstream, Nginx(f"127.0.0.1:{upstream.port}") as proxy:
        yield proxy


@pytest.mark.servers
@pytest.mark.parametrize("encoding", ["identity", "gzip"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_stream_passes_nginx_while_operation_runs(site: Nginx, fmt: str, encoding: str) -> None:
    key = uuid.uuid4().hex
    client_class = GzipClient if encoding == "gzip" else RawClient
    with client_class(site.url, f"/ops/run?format={fmt}&key={key}", {"Accept-Encoding": encoding}) as client:
        body = handshake(client, key, f"{site.url}/release?key={key}")
    assert client.status == 200, site.errors()
    if encoding == "gzip":
        # gzip really is applied to the stream, and still did not hold it back.
        assert client.headers.get("content-encoding") == "gzip"
    else:
        assert "content-encoding" not in client.headers
    assert "x-accel-buffering" not in client.headers  # nginx acts on it and keeps it to itself
    for line in (f"second {key} released=True", f"line 1 of {key}", f"line 2 of {key}", f"line 3 of {key}"):
        assert line.encode() in body
    assert_ended_ok(fmt, body)


@pytest.mark.servers
def test_sse_location_streams_and_answers_a_reconnection_with_204(site: Nginx) -> None:
    key = uuid.uuid4().hex
    with RawClient(site.url, f"/events/run?key={key}", {"Accept": "text/event-stream"}) as client:
        body = handshake(client, key, f"{site.url}/release?key={key}")
    assert client.headers["content-type"] == "text/event-stream"
    assert_ended_ok("sse", body)
    with RawClient(site.url, f"/events/run?key={key}", {"Accept": "text/event-stream", "Last-Event-ID": "6"}) as again:
        again.read_to_end()
    assert again.status == 204


@pytest.mark.servers
def test_site_pages_are_gzipped(site: Nginx) -> None:
    """gzip is on for the site: an ordinary page comes back compressed (so the stream tests mean something)."""
    with RawClient(site.url, "/page", {"Accept-Encoding": "gzip"}) as client:
        raw = client.read_to_end()
    assert client.status == 200
    assert client.headers.get("content-encoding") == "gzip"
    assert len(raw) < len(PAGE) // 4
    assert zlib.decompress(raw, wbits=31) == PAGE


@pytest.mark.servers
def test_without_x_accel_buffering_gzip_holds_the_stream_back() -> None:
    """Contrast: the same config told to ignore the header holds a gzipped stream until the operation ends.

    With buffering on, nginx hands the gzip filter what it reads without a
    flush, and gzip waits to fill its buffers: the first line cannot arrive
    before the release (the operation is blocked for up to 30 s), so two
    seconds without it show the stream held. This is the one bounded negative
    wait in these tests.
    """
    key = uuid.uuid4().hex
    ignoring = ("proxy_ignore_headers X-Accel-Buffering;",)
    with (
        gunicorn_with("gunicorn.conf.py", APP) as upstream,
        Nginx(f"127.0.0.1:{upstream.port}", http_extra=ignoring) as proxy,
        GzipClient(proxy.url, f"/ops/run?format=text&key={key}", {"Accept-Encoding": "gzip"}) as client,
    ):
        with pytest.raises(AssertionError, match="timed out"):
            client.read_until(f"first {key}".encode(), timeout=2)
        assert client.body == b""
        with RawClient(proxy.url, f"/release?key={key}") as release:
            release.read_to_end()
        body = client.read_to_end()
    assert client.headers.get("content-encoding") == "gzip"
    assert f"first {key}".encode() in body
    assert_ended_ok("text", body)


@contextlib.contextmanager
def _open_files(wanted: int) -> Iterator[None]:
    """Raise this process's soft limit on open files to ``wanted`` (within the hard limit) for a while."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    assert target >= wanted, f"ulimit -n hard limit {hard} is below the {wanted} descriptors this test needs"
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _count(url: str, key: str = "") -> dict[str, int]:
    with RawClient(url, f"/count?key={key}") as client:
        counts: dict[str, int] = json.loads(client.read_to_end())
    return counts


STREAMS = 500
# Measured here (2 cores): a warm worker's RSS rises by about 4 MiB while 500
# streams are open and comes back to within 0.1-0.7 MiB of where it started
# (the first round after start-up keeps ~13 MiB of allocator and import
# high-water mark, hence one warm-up round before measuring). 2 MiB is 4 KiB a
# stream: keeping any stream's channel, lines or greenlet would exceed it.
RSS_SLACK = 2 * 2**20


def _round(url: str, tag: str, worker: psutil.Process) -> dict[str, tuple[int, float, int]]:
    """Open STREAMS streams at once, each with its own key; check each sees only its own lines."""

    def figures() -> tuple[int, float, int]:
        return worker.num_threads(), worker.memory_info().rss / 2**20, worker.num_fds()

    before = figures()
    keys = [f"{tag}-{n}" for n in range(STREAMS)]
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(RawClient(url, f"/ops/run?format=ndjson&key={key}")) for key in keys]
        for key, client in zip(keys, clients, strict=True):
            client.read_until(f"first {key}".encode(), timeout=30)
        # Every stream is open and every operation is blocked, waiting.
        during = figures()
        with RawClient(url, f"/release?key={tag}-*") as release:
            release.read_to_end()
        for key, client in zip(keys, clients, strict=True):
            events = ndjson_objects(client.read_to_end())
            messages = [event["message"] for event in events if event["event"] == "log"]
            assert len(messages) == 5, (key, events)
            assert all(key in message.split() for message in messages), (key, messages)
            assert events[-1]["event"] == "end" and events[-1]["status"] == "ok", (key, events[-1])
    # Streams over: wait (bounded) for the server to have closed every one of them.
    wait_until(lambda: _count(url)["open"] == 0, 15, "the server to close every stream")
    after = figures()
    return {"before": before, "during": during, "after": after}


@pytest.mark.servers
def test_500_streams_through_nginx_to_gevent_stay_apart_and_leave_nothing_behind() -> None:
    with _open_files(4 * STREAMS), gunicorn_with("gunicorn_gevent.conf.py", APP) as upstream:
        proxy = Nginx(f"127.0.0.1:{upstream.port}")
        with proxy:
            with RawClient(proxy.url, "/pid") as client:
                worker = psutil.Process(int(client.read_to_end()))
            assert worker.ppid() == upstream.proc.pid
            _round(proxy.url, "warm", worker)
            figures = _round(proxy.url, "measured", worker)
    for moment, (threads, rss, fds) in figures.items():
        print(f"gevent worker {moment:>6}: {threads} threads, {rss:.1f} MiB RSS, {fds} descriptors")
    (threads_before, rss_before, _), (threads_during, _, fds_during), (threads_after, rss_after, _) = figures.values()
    assert fds_during >= STREAMS  # all 500 were open in this one worker at once
    # gevent: a stream and its operation are greenlets, not OS threads.
    assert threads_during <= threads_before + 2
    assert threads_after <= threads_before
    assert rss_after - rss_before <= RSS_SLACK / 2**20, figures
