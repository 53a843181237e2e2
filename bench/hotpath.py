"""Instruction counts of the hot path, step by step: repeatable on a loaded machine.

Wall-clock figures on a two-core machine shared with other work move by tens
of per cent from run to run; the number of instructions a step executes does
not. ``python bench/hotpath.py`` runs each step under ``valgrind
--tool=callgrind`` twice, ``--calls`` times and zero times, in otherwise
identical processes, and prints the difference divided by ``--calls``:
instructions per call, interpreter and C library included.

The steps, in the operation's thread (per record):

* ``handler_info``: ``logger.info`` through a formatting handler into a deque
  (the standard ``logging.Formatter``): the producer ceiling's call;
* ``stream_info``: the same call inside a bound stream sink whose channel has
  one reader (a plain stream), formatted by the same ``logging.Formatter``;
* ``stream_info_1000``: the same with 1,000 readers attached (a job's viewers);
* ``stream_info_read``: ``stream_info`` with its reader taking every 64 records,
  counted too (the drain and the take: a line's work in the process but its
  encoding); ``stream_info_drained``: the same with the inbox emptied as that
  reader's drain does, without the reader's work (the operation's share of a
  live stream). ``stream_info`` itself has a reader that never takes, so the
  operation's thread drains (numbers, makes entries) every 1,000 records;
* ``stream_info_no_channel``: ``stream_info`` with the channel's
  ``append_log`` a no-op: the capture path alone;
* ``make_record``, ``format``, ``wants``, ``entry``, ``append``, ``emit``:
  the parts of ``stream_info`` on their own.

In the reader's thread, per line per viewer, for 1,000 viewers of one channel
that each take every line as it comes (``take_FORMAT``: ``Reader.take`` and the
format's encoding of what it took, as ``StreamResponse.__next__`` does).

``python bench/hotpath.py --run STEP N`` runs one step N times without valgrind.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import workload  # noqa: E402 - a sibling module

from wsgi_logstream import capture  # noqa: E402
from wsgi_logstream.channel import Channel, Entry, Reader  # noqa: E402
from wsgi_logstream.formats import HtmlFormat, NdjsonFormat, SseFormat, TextFormat  # noqa: E402
from wsgi_logstream.response import StreamResponse  # noqa: E402

VIEWERS = 1000
NOW = time.time()


class DequeHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: deque[str] = deque(maxlen=1000)
        self.setFormatter(logging.Formatter(workload.FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def _sink(readers: int) -> tuple[capture.Sink, Channel]:
    channel = Channel(1000, retain=readers > 1)
    for _ in range(readers):
        channel.reader()
    sink = capture.Sink(channel, level=logging.INFO, loggers=None, formatter=logging.Formatter(workload.FORMAT))
    return sink, channel


def _first_reader(channel: Channel) -> Reader:
    """The reader ``_sink`` attached (a lone reader is kept outside the channel's dict of readers)."""
    lone = getattr(channel, "_lone", None)
    return lone if lone is not None else next(iter(channel._readers))


def _record() -> logging.LogRecord:
    return logging.getLogger("bench.streamed").makeRecord(
        "bench.streamed", logging.INFO, __file__, 1, workload.MESSAGE, (1, NOW), None
    )


class QueueHandler(logging.Handler):
    """The latency workload's second ceiling: ``logging`` through a formatting handler into the hand-off."""

    def __init__(self, lines: queue.SimpleQueue[bytes]) -> None:
        super().__init__()
        self.lines = lines
        self.setFormatter(logging.Formatter(workload.FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.put((self.format(record) + "\n").encode())


def _end_to_end(step: str) -> Callable[[], object]:
    """One line from the operation's call to the bytes its response yields, in one thread (no wait, no wake).

    ``e2e_handoff``: the bare hand-off ceiling (``app_handoff.py``: an f-string, a ``SimpleQueue``);
    ``e2e_handoff_logging``: the same hand-off fed by ``logger.info`` through a formatting handler
    (``app_handoff_logging.py``); ``e2e_flask``: the recipe's (``recipe.py``: its handler, a ``queue.Queue``,
    the line encoded as werkzeug does); ``e2e_stream``: ``logger.info`` inside a stream, then the text
    response's ``__next__`` (the take and the format's encoding).
    """
    lines: queue.SimpleQueue[bytes] = queue.SimpleQueue()
    if step == "e2e_handoff":
        prefix = logging.Formatter(workload.FORMAT).format(
            logging.LogRecord(workload.LOGGER, logging.INFO, "", 0, "", None, None)
        )
        clock = time.time

        def handoff() -> object:
            lines.put(f"{prefix}seq={1:07d} t={clock():.6f} {workload.PAD}#\n".encode())
            return lines.get()

        return handoff
    if step == "e2e_handoff_logging":
        log = logging.getLogger("bench.handoff")
        log.handlers[:] = [QueueHandler(lines)]
        log.setLevel(logging.INFO)
        log.propagate = False

        def handoff_logging() -> object:
            log.info(workload.MESSAGE, 1, time.time())
            return lines.get()

        return handoff_logging
    if step == "e2e_flask":
        import recipe  # a sibling module: the recipe's handler and its queue.Queue

        queued: queue.Queue[str | None] = queue.Queue()
        log = logging.getLogger("bench.flask")
        log.handlers[:] = [recipe.QueueLineHandler(queued)]
        log.setLevel(logging.INFO)
        log.propagate = False

        def flask() -> object:
            log.info(workload.MESSAGE, 1, time.time())
            line = queued.get()
            assert line is not None
            return (line + "\n").encode()  # the generator's yield, as werkzeug encodes it

        return flask
    if step == "e2e_stream":
        sink, channel = _sink(1)
        response = StreamResponse(_first_reader(channel), TextFormat(), title="t", started=NOW, heartbeat=3600)
        next(response)  # the head
        response._second_after = None  # past the first write's pause (FIRST_GAP)
        response._pending.clear()
        streamed = logging.getLogger("bench.streamed")
        capture._current.set(sink)

        def stream() -> object:
            streamed.info(workload.MESSAGE, 1, time.time())
            return next(response)

        return stream
    raise SystemExit(f"unknown step {step!r}")


def setup(step: str) -> Callable[[], object]:
    """The callable one call of ``step`` is (made before counting starts)."""
    capture.install()
    if step == "handler_info":
        log = logging.getLogger("bench.plain")
        log.handlers[:] = [DequeHandler()]
        log.setLevel(logging.INFO)
        log.propagate = False
        return lambda: log.info(workload.MESSAGE, 1, NOW)
    if step in ("stream_info", "stream_info_1000"):
        sink, _ = _sink(1 if step == "stream_info" else VIEWERS)
        streamed = logging.getLogger("bench.streamed")
        capture._current.set(sink)
        return lambda: streamed.info(workload.MESSAGE, 1, NOW)
    if step in ("stream_info_read", "stream_info_drained"):
        # A live stream: its reader drains the inbox every 64 records. "_read" counts the reader's work
        # too (the drain, the take: all of a line's work in the process but its encoding); "_drained"
        # empties the inbox as a reader's drain would, without the reader's work: the operation's share.
        sink, channel = _sink(1)
        reader = _first_reader(channel)
        streamed = logging.getLogger("bench.streamed")
        capture._current.set(sink)
        inbox = channel._inbox
        calls = [0]

        def info_read() -> object:
            streamed.info(workload.MESSAGE, 1, NOW)
            calls[0] += 1
            if calls[0] % 64 == 0:
                reader.take() if step == "stream_info_read" else inbox.clear()
            return None

        return info_read
    if step == "stream_info_no_channel":
        sink, channel = _sink(1)
        channel.append_log = lambda *args: None  # type: ignore[method-assign]
        streamed = logging.getLogger("bench.streamed")
        capture._current.set(sink)
        return lambda: streamed.info(workload.MESSAGE, 1, NOW)
    if step == "make_record":
        return _record
    if step == "format":
        formatter = logging.Formatter(workload.FORMAT)
        record = _record()

        def format_once() -> object:
            record.__dict__.pop("message", None)
            return formatter.format(record)

        return format_once
    if step == "wants":
        sink, _ = _sink(1)
        return lambda: sink.wants("bench.streamed", logging.INFO)
    if step == "entry":
        return lambda: Entry("log", NOW, 20, "INFO", "bench.streamed", "message", "line")
    if step == "append":
        _, channel = _sink(1)
        line = "x" * 80
        return lambda: channel.append_log(NOW, 20, "INFO", "bench.streamed", line, line)
    if step == "emit":
        sink, _ = _sink(1)
        record = _record()
        return lambda: sink.emit(record)
    if step.startswith("e2e_"):
        return _end_to_end(step)
    match = re.fullmatch(r"take_(text|html|sse|ndjson)", step)
    if match:
        fmt = {"text": TextFormat(), "html": HtmlFormat(), "sse": SseFormat(), "ndjson": NdjsonFormat()}[match[1]]
        channel = Channel(1000, retain=True)
        responses = []
        for _ in range(VIEWERS):
            response = StreamResponse(channel.reader(), fmt, title="t", started=NOW, heartbeat=3600)
            next(response)  # the head
            responses.append(response)
        line = logging.Formatter(workload.FORMAT).format(_record())
        message = line.split(": ", 1)[1]

        def one_line_to_every_viewer() -> object:
            channel.append_log(NOW, 20, "INFO", "bench.streamed", message, line)
            for response in responses:
                next(response)
            return None

        return one_line_to_every_viewer
    raise SystemExit(f"unknown step {step!r}")


STEPS = [
    "handler_info",
    "stream_info",
    "stream_info_1000",
    "stream_info_read",
    "stream_info_drained",
    "stream_info_no_channel",
    "make_record",
    "format",
    "wants",
    "entry",
    "append",
    "emit",
    "e2e_handoff",
    "e2e_handoff_logging",
    "e2e_flask",
    "e2e_stream",
    "take_text",
    "take_html",
    "take_sse",
    "take_ndjson",
]
#: Steps whose one call serves every viewer: their count is divided by VIEWERS too.
PER_VIEWER = {s for s in STEPS if s.startswith("take_")}


def run(step: str, calls: int) -> None:
    call = setup(step)
    call()  # warm: the first call fills caches (names, the formatter's)
    for _ in range(calls):
        call()


def _instructions(step: str, calls: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                __file__,
                "--run",
                *[step, str(calls)],
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        with open(out) as f:
            for line in f:
                if line.startswith("summary:") or line.startswith("totals:"):
                    return int(line.split()[1])
    raise RuntimeError("no totals in callgrind's output")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", nargs=2, metavar=("STEP", "N"), help="run one step N times (what valgrind runs)")
    parser.add_argument("--calls", type=int, default=2000, help="calls counted per step")
    parser.add_argument("steps", nargs="*", default=STEPS)
    args = parser.parse_args(argv)
    if args.run:
        run(args.run[0], int(args.run[1]))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    result: dict[str, Any] = {}
    for step in args.steps:
        calls = max(args.calls // 20, 10) if step in PER_VIEWER else args.calls
        per_call = (_instructions(step, calls) - _instructions(step, 0)) / calls
        result[step] = round(per_call / VIEWERS if step in PER_VIEWER else per_call)
        print(f"{step:20} {result[step]:>8,} instructions per {'line per viewer' if step in PER_VIEWER else 'call'}")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
