"""``max_concurrent`` caps the operations running at once: past it, 503 with Retry-After and nothing runs."""

from __future__ import annotations

import logging
import sys
import threading

from tests.inproc import call
from tests.wire import summary
from wsgi_logstream import logstream

log = logging.getLogger("tests.overload")


class Gate:
    """A target that counts its runs and blocks (bounded) until released."""

    def __init__(self) -> None:
        self.runs = 0
        self.release = threading.Event()
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            self.runs += 1
        log.info("running")
        assert self.release.wait(30)


def test_a_request_past_max_concurrent_gets_503_with_retry_after_and_runs_nothing() -> None:
    gate = Gate()
    app = logstream(gate, max_concurrent=2, heartbeat=30)
    first = call(app, "format=text")
    second = call(app, "format=text")
    try:
        first.read_until(b"running")
        second.read_until(b"running")
        with call(app, "format=text") as third:
            assert third.code == 503
            retry = third.header("Retry-After")
            assert retry is not None and retry.isdigit() and int(retry) > 0
            assert b"max_concurrent=2" in third.read_to_end()
        assert gate.runs == 2
    finally:
        gate.release.set()
        first.read_to_end()
        second.read_to_end()


def test_head_neither_counts_nor_is_refused() -> None:
    gate = Gate()
    app = logstream(gate, max_concurrent=1, heartbeat=30)
    for _ in range(3):
        with call(app, "format=text", method="HEAD") as head:
            assert head.code == 200
            assert head.read_to_end() == b""
    running = call(app, "format=text")
    try:
        running.read_until(b"running")
        with call(app, "format=text", method="HEAD") as head:
            assert head.code == 200, "HEAD runs nothing, so it is never refused"
        assert gate.runs == 1
    finally:
        gate.release.set()
        running.read_to_end()


def test_after_an_operation_ends_a_new_request_is_served() -> None:
    gate = Gate()
    app = logstream(gate, max_concurrent=1, heartbeat=30)
    first = call(app, "format=text")
    first.read_until(b"running")
    with call(app, "format=text") as refused:
        assert refused.code == 503
    gate.release.set()
    assert summary(first.read_to_end(), "text")["status"] == "ok"
    # No waiting: once the client has read the summary, the slot is free.
    with call(app, "format=text") as again:
        assert again.code == 200
        assert summary(again.read_to_end(), "text")["status"] == "ok"
    assert gate.runs == 2


def test_a_client_that_read_the_summary_can_start_another_at_once() -> None:
    """The slot is freed before the summary is sent, never after: no 503 for an immediate retry.

    The window is a few bytecodes wide, so the thread switch interval is made
    tiny to open it, and 2,000 back-to-back runs give it every chance.
    """
    app = logstream(lambda: None, max_concurrent=1)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for attempt in range(2000):
            with call(app, "format=text") as stream:
                assert stream.code == 200, f"refused on attempt {attempt} right after the previous summary"
                assert stream.read_to_end().endswith(b"dropped) --\n")
    finally:
        sys.setswitchinterval(interval)
