"""Faults: targets that raise, hang, exit or break the formatter; workers killed or reloaded.

In this process: whatever the target does, the stream ends with a summary that
says what happened, and the server goes on serving. In gunicorn: a worker
killed with SIGKILL mid-stream leaves the client a stream it can tell was cut
(no summary, and no terminating zero-length chunk), and a SIGHUP reload lets
an open stream finish on its old worker while new requests go to the new one.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.inproc import fetch
from tests.servers import Program, RawClient, gunicorn, process_gone, stats, wait_until, wsgiref_server
from tests.wire import FORMATS, ndjson_objects, records, summary
from wsgi_logstream import cancelled, logstream, wait_cancelled

log = logging.getLogger("tests.hostile.faults")

TRIED: Counter[str] = Counter()
FIGURES: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def _print_counts() -> Iterator[None]:
    yield
    print("\n[faults] " + ", ".join(f"{key}: {count}" for key, count in sorted(TRIED.items())))
    for line in FIGURES:
        print(f"[faults] {line}")


def raises() -> None:
    log.info("before the fault")
    raise ValueError("the target broke")


def exits() -> None:
    log.info("before the fault")
    raise SystemExit(3)


def calls_sys_exit() -> None:
    import sys

    log.info("before the fault")
    sys.exit(3)


def interrupted() -> None:
    log.info("before the fault")
    raise KeyboardInterrupt


FAULTS: dict[str, tuple[Callable[[], None], str]] = {
    "raises": (raises, "ValueError: the target broke"),
    "sys.exit(3)": (calls_sys_exit, "SystemExit: 3"),
    "raise SystemExit(3)": (exits, "SystemExit: 3"),
    "KeyboardInterrupt": (interrupted, "KeyboardInterrupt"),
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_failing_target_ends_the_stream_with_an_error_summary(fault: str, fmt: str) -> None:
    target, error = FAULTS[fault]
    reply = fetch(logstream(target, formatter="%(message)s"), f"format={fmt}")
    assert reply.code == 200
    end = summary(reply.body, fmt)
    assert end["status"] == "error" and error in end["error"]
    assert end["traceback"].startswith("Traceback (most recent call last):")
    assert [line for _, line in records(reply.body, fmt)] == ["before the fault"]
    TRIED[f"target {fault}"] += 1


def test_the_server_goes_on_serving_after_targets_exit_and_interrupt() -> None:
    with wsgiref_server(logstream(calls_sys_exit)) as url:
        for _ in range(3):
            with RawClient(url, "/?format=text") as client:
                body = client.read_to_end()
            assert summary(body, "text")["error"] == "SystemExit: 3"
        with wsgiref_server(logstream(interrupted)) as other, RawClient(other, "/?format=text") as client:
            assert summary(client.read_to_end(), "text")["error"] == "KeyboardInterrupt"
        with RawClient(url, "/?format=text") as client:
            assert summary(client.read_to_end(), "text")["error"] == "SystemExit: 3"
    TRIED["server alive after SystemExit/KeyboardInterrupt"] += 1


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_target_that_never_returns_ends_at_timeout_and_sees_cancelled(fmt: str) -> None:
    seen: dict[str, Any] = {}

    def forever() -> None:
        log.info("working")
        started = time.monotonic()
        while not cancelled():
            wait_cancelled(0.01)
        seen["cancelled"] = cancelled()
        seen["after"] = time.monotonic() - started

    app = logstream(forever, timeout=0.3, formatter="%(message)s")
    reply = fetch(app, f"format={fmt}")
    end = summary(reply.body, fmt)
    assert end["status"] == "timeout" and end["error"].startswith("timed out after 0.3s"), end
    wait_until(lambda: seen.get("cancelled"), message="the target to see cancelled()")
    wait_until(lambda: app.running == 0, message="the target to return")
    TRIED["target never returns (timeout)"] += 1


def test_a_target_that_ignores_cancellation_still_has_its_stream_end_at_timeout() -> None:
    release = threading.Event()

    def stubborn() -> None:
        log.info("ignoring everything")
        release.wait(30)  # never checks cancelled()

    app = logstream(stubborn, timeout=0.3, formatter="%(message)s")
    try:
        started = time.monotonic()
        reply = fetch(app, "format=ndjson")
        took = time.monotonic() - started
        end = ndjson_objects(reply.body)[-1]
        assert end["status"] == "timeout"
        assert app.running == 1, "the target is still running: the stream did not wait for it"
    finally:
        release.set()
    wait_until(lambda: app.running == 0, message="the stubborn target to return once released")
    FIGURES.append(f"a target ignoring cancellation: its stream ended with status timeout after {took:.2f}s")
    TRIED["target ignores cancellation"] += 1


class BrokenFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        if "boom" in record.getMessage():
            raise RuntimeError("formatter exploded")
        return super().format(record)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_formatter_that_raises_still_shows_the_record_with_a_note(fmt: str) -> None:
    def target() -> None:
        log.info("fine before")
        log.info("boom %s", "here")
        log.info("%d is not a number", "x")  # bad %-args: getMessage raises inside the formatter
        log.info("fine after")

    reply = fetch(logstream(target, formatter=BrokenFormatter("%(message)s")), f"format={fmt}")
    body = reply.body.decode()
    assert "fine before" in body and "fine after" in body
    assert "boom here" in body and "formatter exploded" in body
    assert "is not a number" in body and "formatter failed" in body
    assert summary(reply.body, fmt)["status"] == "ok"
    if fmt == "ndjson":
        assert [o["event"] for o in ndjson_objects(reply.body)].count("log") == 4
    TRIED["formatter raises"] += 1


# -- gunicorn -------------------------------------------------------------------------


def _chunked_cut(client: RawClient) -> bool:
    return client.headers.get("transfer-encoding") == "chunked" and not client.raw.endswith(b"0\r\n\r\n")


@pytest.fixture
def server() -> Iterator[Program]:
    with gunicorn(
        "tests.apps.hostile_app:application",
        worker_class="gthread",
        threads=8,
        extra=("--graceful-timeout", "3", "--timeout", "3"),
    ) as program:
        yield program


@pytest.mark.servers
def test_a_worker_killed_mid_stream_leaves_a_stream_the_client_can_tell_was_cut(server: Program) -> None:
    key = uuid.uuid4().hex
    worker = stats(server.url)["pid"]
    with (
        RawClient(server.url, f"/wait?format=text&key={key}") as text,
        RawClient(server.url, f"/wait?format=ndjson&key=n{key}") as ndjson,
    ):
        text.read_until(f"waiting {key}".encode())
        ndjson.read_until(f"waiting n{key}".encode())
        os.kill(worker, signal.SIGKILL)
        text_body = text.read_to_end(timeout=30).decode()
        ndjson_body = ndjson.read_to_end(timeout=30).decode()
    for client in (text, ndjson):
        assert _chunked_cut(client), "a cut chunked stream must not end with the zero-length chunk"
    assert "-- ok" not in text_body and not text_body.rstrip("\n").endswith(" --")
    assert '"event":"end"' not in ndjson_body
    new = wait_until(lambda: (pid := stats(server.url)["pid"]) != worker and pid, 30, "a new worker")
    with RawClient(server.url, "/tiny?format=text") as after:
        assert summary(after.read_to_end(), "text")["status"] == "ok"
    TRIED["worker SIGKILLed mid-stream"] += 2
    FIGURES.append(f"SIGKILL: worker {worker} killed with 2 open streams, both cut without a summary; {new} serves")


@pytest.mark.servers
def test_a_reload_lets_open_streams_finish_on_the_old_worker_and_serves_new_ones_from_the_new(
    server: Program, tmp_path: Path
) -> None:
    key = uuid.uuid4().hex
    flag = tmp_path / "release"
    old = stats(server.url)["pid"]
    with (
        RawClient(server.url, f"/wait?format=text&key=a{key}&flag={flag}") as finishing,
        RawClient(server.url, f"/wait?format=text&key=b{key}") as endless,
    ):
        finishing.read_until(f"waiting a{key}".encode())
        endless.read_until(f"waiting b{key}".encode())
        hup = time.monotonic()
        os.kill(server.proc.pid, signal.SIGHUP)
        new = wait_until(lambda: (pid := stats(server.url)["pid"]) != old and pid, 30, "a new worker")
        with RawClient(server.url, "/tiny?format=text") as fresh:
            assert summary(fresh.read_to_end(), "text")["status"] == "ok"
        # The old worker no longer takes requests, but its stream goes on: release it through a file.
        flag.touch()
        finished = finishing.read_to_end(timeout=30).decode()
        finished_after = time.monotonic() - hup
        assert f"released a{key}" in finished and finished.rstrip("\n").rsplit("\n", 1)[-1].startswith("-- ok")
        assert not _chunked_cut(finishing)
        # One that never ends outlives the graceful timeout: gunicorn's gthread worker
        # stops waiting for it, then cannot exit (its pool threads are not daemons) and is
        # killed by the arbiter once it stops notifying (--timeout). The stream is cut.
        cut = endless.read_to_end(timeout=60).decode()
        cut_after = time.monotonic() - hup
    assert _chunked_cut(endless) and "-- ok" not in cut
    wait_until(lambda: process_gone(old), 30)
    TRIED["SIGHUP reload with open streams"] += 2
    FIGURES.append(
        f"SIGHUP: new worker {new} served at once; a stream released {finished_after:.1f}s after the HUP finished"
        f" with its summary on old worker {old}; a never-ending one was cut {cut_after:.1f}s after the HUP"
        " (graceful timeout 3s + worker timeout 3s)"
    )
