"""A client that goes away releases its stream at once; the operation continues or is cancelled, as asked.

Also the cancellation helpers the operation uses to notice: ``cancelled()``,
``wait_cancelled()`` and the ``timeout`` option.
"""

from __future__ import annotations

import gc
import json
import logging
import threading
import weakref
from typing import Any

import pytest

import wsgi_logstream
from tests.inproc import call, logging_snapshot
from tests.servers import RawClient, wait_until
from tests.servers import wsgiref_server as serve
from tests.wire import ndjson_objects
from wsgi_logstream import cancelled, logstream, wait_cancelled
from wsgi_logstream.capture import Sink, current_sink

log = logging.getLogger("tests.disconnect")


class CountingFormatter(logging.Formatter):
    """Counts the records it formats: a record formatted after the client left is wasted work."""

    def __init__(self) -> None:
        super().__init__("%(message)s")
        self.count = 0

    def format(self, record: logging.LogRecord) -> str:
        self.count += 1
        return super().format(record)


class Probe:
    """What a target saw, for the test thread to read once ``done`` is set."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.done = threading.Event()
        self.sink: Sink | None = None
        self.saw: dict[str, Any] = {}

    def bind(self) -> None:
        self.sink = current_sink()

    def channel_closed(self) -> bool:
        return self.sink is not None and self.sink.channel.closed


def test_closing_mid_stream_releases_what_the_response_held_and_stops_formatting() -> None:
    formatter = CountingFormatter()
    probe = Probe()

    def target() -> None:
        probe.bind()
        log.info("first")
        assert probe.release.wait(10)
        for i in range(100):
            log.info("after close %d", i)
        probe.done.set()

    app = logstream(target, formatter=formatter, heartbeat=30)
    stream = call(app, "format=text")
    stream.read_until(b"first\n")
    response = weakref.ref(stream.result)
    stream.close()
    assert probe.sink is not None
    channel = probe.sink.channel
    assert channel.closed, "closing the response must abandon the channel"
    assert channel.readers == 0
    assert channel.next_seq - channel.first_seq == 0, "entries are still held"
    del stream
    gc.collect()
    assert response() is None, "the running operation still keeps the closed response alive"
    probe.release.set()
    assert probe.done.wait(10)
    assert formatter.count == 1, "records logged after the client left were still formatted"
    wait_until(lambda: app.running == 0, 10, "the operation to end")


def test_close_cancels_the_target_when_on_disconnect_is_cancel() -> None:
    probe = Probe()

    def target() -> None:
        log.info("waiting")
        probe.saw["before"] = cancelled()
        probe.saw["woke"] = wait_cancelled(30)
        probe.saw["after"] = cancelled()
        probe.done.set()

    stream = call(logstream(target, on_disconnect="cancel"), "format=ndjson")
    stream.read_until(b"waiting")
    stream.close()
    assert probe.done.wait(10), "wait_cancelled did not return early on cancel"
    assert probe.saw == {"before": False, "woke": True, "after": True}


@pytest.mark.parametrize("on_disconnect", ["continue", "cancel"])
def test_a_socket_closed_mid_stream_is_noticed_by_a_real_server(on_disconnect: str) -> None:
    """The client hangs up; wsgiref's next write fails and it calls close() on the response."""
    probe = Probe()

    def target() -> None:
        probe.bind()
        log.info("first line")
        if on_disconnect == "cancel":
            probe.saw["woke"] = wait_cancelled(30)
        else:
            assert probe.release.wait(30)
        log.info("last line")
        probe.saw["cancelled"] = cancelled()
        probe.done.set()

    app = logstream(target, on_disconnect=on_disconnect, heartbeat=0.05, formatter="%(message)s")
    with serve(app) as url:
        with RawClient(url, "/?format=text") as client:
            client.read_until(b"first line\n")
        wait_until(probe.channel_closed, 10, "the server to close the response")
        assert not probe.done.is_set() or on_disconnect == "cancel"
        probe.release.set()
        assert probe.done.wait(10), "the target did not run to its end"
    if on_disconnect == "cancel":
        assert probe.saw == {"woke": True, "cancelled": True}
    else:
        assert probe.saw == {"cancelled": False}, "with continue the target must not be cancelled"


def test_a_hundred_streams_closed_mid_way_leave_no_thread_or_handler_behind() -> None:
    release = threading.Event()

    def target() -> None:
        log.info("started")
        assert release.wait(30)
        log.info("finished")

    app = logstream(target, heartbeat=30)
    threads_before = set(threading.enumerate())
    logging_before = logging_snapshot()
    for _ in range(100):
        stream = call(app, "format=sse")
        stream.read_until(b"started")
        stream.close()
    assert app.running == 100
    release.set()
    wait_until(lambda: app.running == 0, 20, "every operation to end")
    # A subset, not equality: a thread left by an earlier test may end meanwhile.
    wait_until(lambda: set(threading.enumerate()) <= threads_before, 20, "the worker threads to exit")
    assert threading.active_count() <= len(threads_before)
    logging_after = logging_snapshot()
    assert {name: logging_after[name] for name in logging_before} == logging_before
    assert all(logging_after[name][0] == () for name in logging_after.keys() - logging_before.keys())


# -- cancellation helpers ----------------------------------------------------------


def test_cancelled_is_false_outside_a_stream_and_wait_cancelled_just_waits() -> None:
    assert cancelled() is False
    assert wait_cancelled(0.01) is False


def test_cancelled_is_false_inside_a_stream_nobody_cancelled_and_in_its_threads() -> None:
    seen: list[bool] = []

    def target() -> None:
        seen.append(cancelled())
        seen.append(wait_cancelled(0.01))
        thread = wsgi_logstream.Thread(target=lambda: seen.append(cancelled()))
        thread.start()
        thread.join()

    body = call(logstream(target), "format=ndjson").read_to_end()
    assert json.loads(body.splitlines()[-1])["status"] == "ok"
    assert seen == [False, False, False]


def test_timeout_ends_the_stream_with_status_timeout_while_the_target_keeps_running() -> None:
    probe = Probe()

    def target() -> None:
        log.info("slow work")
        assert probe.release.wait(30)  # does not cooperate: keeps running past the timeout
        probe.saw["cancelled"] = cancelled()
        log.info("too late")
        probe.done.set()

    app = logstream(target, timeout=0.2, heartbeat=30, formatter="%(message)s")
    body = call(app, "format=ndjson").read_to_end()
    objects = ndjson_objects(body)
    assert objects[-1]["event"] == "end"
    assert objects[-1]["status"] == "timeout"
    assert [o["message"] for o in objects if o["event"] == "log"] == ["slow work"]
    assert not probe.done.is_set(), "the stream ended only because the target did"
    assert app.running == 1
    probe.release.set()
    assert probe.done.wait(10)
    assert probe.saw == {"cancelled": True}
    wait_until(lambda: app.running == 0, 10, "the operation to end")


def test_wait_cancelled_returns_early_when_the_timeout_passes() -> None:
    seen: dict[str, bool] = {}

    def target() -> None:
        seen["woke"] = wait_cancelled(30)

    body = call(logstream(target, timeout=0.2, heartbeat=30), "format=ndjson").read_to_end()
    assert json.loads(body.splitlines()[-1])["status"] == "timeout"
    wait_until(lambda: "woke" in seen, 10, "wait_cancelled to return before its 30 s")
    assert seen["woke"] is True
