"""A target that raises: the reader learns what and where, the host's log learns it too, the server carries on."""

from __future__ import annotations

import logging
import re
import sys
import urllib.request
from typing import NoReturn

import pytest

from tests.inproc import TestApp
from tests.servers import wsgiref_server
from tests.wire import ndjson_objects
from wsgi_logstream import logstream

log = logging.getLogger("tests.errors")


def explodes() -> NoReturn:
    log.info("working")
    raise KeyError("missing-key")


def test_a_failing_target_shows_type_message_and_traceback_and_ends_with_error() -> None:
    body = TestApp(logstream(explodes)).get("/?format=text").text
    lines = body.splitlines()
    assert any(line.endswith("tests.errors: working") for line in lines)
    assert "Traceback (most recent call last):" in lines
    assert any("in explodes" in line for line in lines), "the traceback names the failing function"
    assert lines[-1].startswith("-- error: KeyError: 'missing-key' (after ")
    assert "failed: KeyError" not in body, "the host's error record must not reach the stream"


def test_ndjson_end_carries_error_and_traceback() -> None:
    end = ndjson_objects(TestApp(logstream(explodes)).get("/?format=ndjson").text)[-1]
    assert end["event"] == "end"
    assert end["status"] == "error"
    assert end["error"] == "KeyError: 'missing-key'"
    assert "Traceback (most recent call last)" in end["traceback"]
    assert "raise KeyError" in end["traceback"]


@pytest.mark.parametrize("name", ["text", "html", "sse", "ndjson"])
def test_traceback_false_keeps_the_error_but_not_the_traceback(name: str) -> None:
    body = TestApp(logstream(explodes, traceback=False)).get(f"/?format={name}").text
    # The page's own script and style may mention tracebacks; the stream's content may not.
    body = re.sub(r"<(script|style)\b.*?</\1>", "", body, flags=re.S)
    assert "KeyError" in body and "missing-key" in body
    assert "Traceback" not in body
    assert "raise KeyError" not in body


def test_the_exception_is_logged_once_to_the_hosts_wsgi_logstream_logger(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="wsgi_logstream"):
        TestApp(logstream(explodes)).get("/?format=text")
    records = [r for r in caplog.records if r.name == "wsgi_logstream" and "missing-key" in r.getMessage()]
    assert len(records) == 1
    record = records[0]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None and record.exc_info[0] is KeyError
    assert "missing-key" in record.getMessage()


def test_system_exit_in_the_target_is_an_error_in_the_stream_not_a_dead_worker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def exits() -> NoReturn:
        sys.exit(3)

    with caplog.at_level(logging.ERROR, logger="wsgi_logstream"):
        end = ndjson_objects(TestApp(logstream(exits)).get("/?format=ndjson").text)[-1]
    assert end["status"] == "error"
    assert end["error"] == "SystemExit: 3"


def test_the_server_keeps_serving_after_a_target_fails(caplog: pytest.LogCaptureFixture) -> None:
    calls = {"n": 0}

    def fails_once() -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("first call fails")
        log.info("second call works")

    with caplog.at_level(logging.ERROR, logger="wsgi_logstream"), wsgiref_server(logstream(fails_once)) as url:
        with urllib.request.urlopen(f"{url}/?format=ndjson", timeout=10) as reply:
            first = ndjson_objects(reply.read().decode())
        with urllib.request.urlopen(f"{url}/?format=ndjson", timeout=10) as reply:
            second = ndjson_objects(reply.read().decode())
    assert first[-1]["status"] == "error"
    assert second[-1]["status"] == "ok"
    assert [o["message"] for o in second if o["event"] == "log"] == ["second call works"]


def test_the_traceback_shown_starts_at_the_targets_own_frame() -> None:
    def parse_row() -> None:
        raise ValueError("bad row 7")

    def failing_import() -> None:
        parse_row()

    body = TestApp(logstream(failing_import)).get("/?format=ndjson").body
    trace = ndjson_objects(body)[-1]["traceback"]
    frames = [line for line in trace.splitlines() if line.lstrip().startswith("File ")]
    assert "in failing_import" in frames[0] and "in parse_row" in frames[1], trace
    assert "wsgi_logstream" not in trace
