"""Streaming leaves the process's logging exactly as its owner set it up.

Every test runs in a fresh interpreter: pytest installs handlers of its own,
which would hide both a missing record and an extra one. Each script prints
what it streamed on stdout; what the host's logging printed is its stderr.
Where it matters, a control run calls the target directly, without the
library, and the two stderr outputs must be identical.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PRELUDE = '''
import logging
import sys
import threading
from wsgiref.util import setup_testing_defaults

import wsgi_logstream


def stream(app, query="format=text", read_all=True):
    """Drive ``app`` as a server would; return the body."""
    environ = {"QUERY_STRING": query}
    setup_testing_defaults(environ)
    result = app(environ, lambda status, headers, exc_info=None: None)
    try:
        chunks = []
        for chunk in result:
            chunks.append(chunk)
            if not read_all and len(chunks) == 2:
                break
        return b"".join(chunks)
    finally:
        result.close()
'''


def run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    source = PRELUDE + textwrap.dedent(script)
    done = subprocess.run(
        [sys.executable, "-c", source, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"script failed ({done.returncode}):\n{done.stderr}"
    return done


TWO_THREADS = """
mode = sys.argv[1]
{setup}
log = logging.getLogger("app")
other_may_log = threading.Event()
other_logged = threading.Event()


def other():
    assert other_may_log.wait(10)
    logging.getLogger("other").info("other-info")
    logging.getLogger("other").warning("other-warning")
    other_logged.set()


def target():
    log.info("target-info")
    log.warning("target-warning")
    other_may_log.set()
    assert other_logged.wait(10)
    log.info("target-info-2")


side = threading.Thread(target=other)
side.start()
if mode == "stream":
    sys.stdout.write(stream(wsgi_logstream.logstream(target, formatter="%(name)s %(message)s")).decode())
else:
    target()
side.join(10)
assert logging.getLogger().level == logging.WARNING
"""


def test_info_records_are_captured_in_a_process_that_never_configured_logging() -> None:
    done = run(
        """
        log = logging.getLogger("app")

        def target():
            log.info("captured-info")
            log.debug("below-the-stream-level")

        sys.stdout.write(stream(wsgi_logstream.logstream(target, formatter="%(message)s")).decode())
        assert logging.getLogger().level == logging.WARNING
        assert logging.getLogger().handlers == []
        """
    )
    lines = done.stdout.splitlines()
    assert "captured-info" in lines
    assert "below-the-stream-level" not in done.stdout
    assert done.stderr == "", "an INFO record must not reach the last-resort handler"


def test_stderr_under_basic_config_is_exactly_what_it_is_without_the_library() -> None:
    script = TWO_THREADS.format(setup="logging.basicConfig(level=logging.WARNING)")
    streamed = run(script, "stream")
    control = run(script, "direct")
    assert control.stderr == "WARNING:app:target-warning\nWARNING:other:other-warning\n"
    assert streamed.stderr == control.stderr
    assert "other-info" not in streamed.stderr
    lines = streamed.stdout.splitlines()
    assert lines[1:4] == ["app target-info", "app target-warning", "app target-info-2"]
    assert "other" not in streamed.stdout


def test_last_resort_still_prints_warnings_while_streaming_in_a_process_without_handlers() -> None:
    script = TWO_THREADS.format(setup="assert logging.getLogger().handlers == []")
    streamed = run(script, "stream")
    control = run(script, "direct")
    assert control.stderr == "target-warning\nother-warning\n"
    assert streamed.stderr == control.stderr
    assert "app target-info-2" in streamed.stdout.splitlines()


def test_a_hundred_requests_leave_the_logging_tree_as_it_was_and_add_no_handler_ever() -> None:
    done = run(
        """
        def snapshot():
            manager = logging.Logger.manager
            loggers = {"": logging.getLogger()}
            loggers.update((n, l) for n, l in manager.loggerDict.items() if isinstance(l, logging.Logger))
            tree = {n: (tuple(l.handlers), l.level, l.propagate, l.disabled) for n, l in loggers.items()}
            return tree, manager.disable, {id(ref()) for ref in logging._handlerList if ref() is not None}

        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
        app_log = logging.getLogger("app")
        app_log.setLevel(logging.ERROR)
        quiet = logging.getLogger("app.quiet")
        quiet.propagate = False
        quiet.addHandler(logging.NullHandler())
        logging.getLogger("gone").disabled = True
        worker = logging.getLogger("app.worker")

        before = snapshot()
        inside = []

        def target(environ):
            n = int(environ["QUERY_STRING"].rsplit("=", 1)[1])
            app_log.info("info %d", n)
            quiet.warning("quiet %d", n)
            thread = wsgi_logstream.Thread(target=worker.debug, args=("worker %d", n))
            thread.start()
            thread.join()
            inside.append(snapshot() == before)
            if n % 10 == 0:
                raise ValueError(f"failure {n}")

        app = wsgi_logstream.logstream(target, level="DEBUG")
        formats = ["text", "html", "sse", "ndjson"]
        for n in range(100):
            body = stream(app, f"format={formats[n % 4]}&n={n}", read_all=n % 3 != 0)
            if n % 3 != 0:
                for line in (f"info {n}", f"quiet {n}", f"worker {n}"):
                    assert line.encode() in body, (line, body)
        # Streams closed mid-way leave their targets running: wait for them.
        import time
        deadline = time.monotonic() + 30
        while app.running and time.monotonic() < deadline:
            time.sleep(0.01)
        assert app.running == 0
        assert len(inside) == 100 and all(inside), inside
        assert snapshot() == before
        print("same")
        """
    )
    assert done.stdout == "same\n"
    # The failures went to the host's wsgi_logstream logger, through its own handler, once each.
    assert done.stderr.count("ERROR wsgi_logstream operation") == 10
    for captured_only in ("info ", "quiet ", "worker "):
        assert captured_only not in done.stderr


def test_a_wrapper_another_library_put_on_logging_first_keeps_seeing_what_the_host_logs() -> None:
    # Error trackers such as Sentry wrap Logger.callHandlers process-wide. Installed
    # before the first stream, such a wrapper must still see every record the host's
    # logging handles, inside a stream and out, and none it would not have.
    done = run(
        """
        seen = []
        original = logging.Logger.callHandlers

        def tracker(self, record):
            seen.append(record.getMessage())
            return original(self, record)

        logging.Logger.callHandlers = tracker
        logging.basicConfig(level=logging.WARNING)

        def target():
            logging.getLogger("app").info("info in the stream")
            logging.getLogger("app").warning("warning in the stream")

        body = stream(wsgi_logstream.logstream(target)).decode()
        logging.getLogger("app").warning("warning outside")
        assert "info in the stream" in body and "warning in the stream" in body, body
        print(seen)
        """
    )
    assert done.stdout.strip() == "['warning in the stream', 'warning outside']"
