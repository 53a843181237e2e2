"""Records reach only the stream of the operation that logged them.

A stream takes what its target logs in its own thread, in threads started with
``wsgi_logstream.Thread`` and in callables wrapped with ``bind``; nothing from
another request, and nothing from the rest of the process.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import urllib.request
from typing import Any
from urllib.parse import parse_qs

import pytest

import wsgi_logstream
from tests.inproc import call
from tests.servers import wsgiref_server as serve
from tests.wire import ndjson_objects
from wsgi_logstream import logstream

log = logging.getLogger("tests.isolation")

CONCURRENT = 50


def _messages(body: bytes) -> list[str]:
    objects = ndjson_objects(body)
    assert objects[-1]["event"] == "end" and objects[-1]["status"] == "ok", objects[-1]
    return [o["message"] for o in objects if o["event"] == "log"]


def test_concurrent_requests_see_only_their_own_records() -> None:
    """50 operations run at once (all wait on one barrier); each stream holds its own token only.

    The unrelated thread joins the same barrier, so it logs while all 50
    operations are running; its records must appear in none of them.
    """
    barrier = threading.Barrier(CONCURRENT + 1, timeout=30)
    unrelated_logged = threading.Event()

    def operation(environ: dict[str, Any]) -> None:
        token = parse_qs(environ["QUERY_STRING"])["token"][0]
        log.info("start %s", token)
        barrier.wait()
        assert unrelated_logged.wait(30)
        log.info("end %s", token)

    def unrelated() -> None:
        barrier.wait()
        log.warning("UNRELATED warning")
        log.error("UNRELATED error")
        unrelated_logged.set()

    bodies: dict[str, bytes] = {}
    errors: list[BaseException] = []

    def client(url: str, token: str) -> None:
        try:
            with urllib.request.urlopen(f"{url}/?format=ndjson&token={token}", timeout=60) as reply:
                bodies[token] = reply.read()
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    tokens = [f"t{i:02d}x" for i in range(CONCURRENT)]
    with serve(logstream(operation, formatter="%(message)s")) as url:
        side = threading.Thread(target=unrelated, daemon=True)
        side.start()
        clients = [threading.Thread(target=client, args=(url, t), daemon=True) for t in tokens]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join(60)
        side.join(10)
    assert errors == []
    assert sorted(bodies) == tokens
    for token, body in bodies.items():
        assert _messages(body) == [f"start {token}", f"end {token}"]
        assert b"UNRELATED" not in body


def test_threads_started_with_thread_or_bind_reach_the_stream_and_plain_threads_do_not() -> None:
    """A plain ``threading.Thread`` starts with an empty context: its record goes to the host only.

    A second stream runs meanwhile, to show the plain thread's record does not
    leak into some other stream either.
    """
    other_running = threading.Event()
    release_other = threading.Event()

    def other() -> None:
        log.info("other start")
        other_running.set()
        assert release_other.wait(30)
        log.info("other end")

    def work(label: str) -> None:
        log.info("from %s", label)

    def operation() -> None:
        log.info("target")
        bound = wsgi_logstream.Thread(target=work, args=("wsgi_logstream.Thread",))
        bound.start()
        bound.join()
        via_bind = threading.Thread(target=wsgi_logstream.bind(work), args=("bind",))
        via_bind.start()
        via_bind.join()
        plain = threading.Thread(target=lambda: log.warning("PLAIN thread record"))
        plain.start()
        plain.join()

    other_app = logstream(other, formatter="%(message)s")
    with call(other_app, "format=ndjson") as other_stream:
        other_stream.next()
        assert other_running.wait(10)
        with call(logstream(operation, formatter="%(message)s"), "format=ndjson") as stream:
            body = stream.read_to_end()
        release_other.set()
        other_body = other_stream.read_to_end()
    messages = _messages(body)
    assert messages[0] == "target"
    assert sorted(messages[1:]) == ["from bind", "from wsgi_logstream.Thread"]
    assert _messages(other_body) == ["other start", "other end"]


def test_plain_thread_record_still_reaches_the_host(caplog: pytest.LogCaptureFixture) -> None:
    def operation() -> None:
        plain = threading.Thread(target=lambda: log.warning("PLAIN to host"))
        plain.start()
        plain.join()

    with caplog.at_level(logging.WARNING, logger="tests.isolation"):
        body = call(logstream(operation), "format=ndjson").read_to_end()
    assert _messages(body) == []
    assert [r.getMessage() for r in caplog.records if r.name == "tests.isolation"] == ["PLAIN to host"]


def test_bind_carries_the_stream_into_a_thread_pool_and_leaves_the_pool_thread_clean() -> None:
    """One shared single-worker pool serves two streams; bound work goes to its own stream only.

    The same pool thread then runs unbound work, which must reach no stream:
    ``bind`` must not leave the stream's context behind on the worker.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:

        def make(label: str) -> Any:
            def operation() -> None:
                futures = [pool.submit(wsgi_logstream.bind(log.info), "%s item %d", label, i) for i in range(3)]
                for future in futures:
                    future.result(10)
                pool.submit(log.info, "UNBOUND after %s", label).result(10)
                results = list(pool.map(wsgi_logstream.bind(lambda i: log.info("%s map %d", label, i) or i), range(2)))
                assert results == [0, 1]

            return operation

        first = call(logstream(make("A"), formatter="%(message)s"), "format=ndjson").read_to_end()
        second = call(logstream(make("B"), formatter="%(message)s"), "format=ndjson").read_to_end()
    assert _messages(first) == ["A item 0", "A item 1", "A item 2", "A map 0", "A map 1"]
    assert _messages(second) == ["B item 0", "B item 1", "B item 2", "B map 0", "B map 1"]
