"""The recipe people use today to stream an operation's log, shared by the Django and Flask contenders.

A ``logging.Handler`` added to the ROOT logger formats each record and puts
the line on a ``queue.Queue``; the operation runs in a ``threading.Thread``;
the response is a generator that takes one line at a time from the queue and
yields it as one chunk. The handler keeps only records of the operation's own
thread: without that filter every concurrent request would receive every
other request's lines, the first bug such a recipe meets in production.

The host configures logging the usual way, once: the operation's logger is
set to INFO so that its records are made at all.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Iterator

import workload

log = logging.getLogger(workload.LOGGER)
log.setLevel(logging.INFO)
_formatter = logging.Formatter(workload.FORMAT)


class QueueLineHandler(logging.Handler):
    """Formats a record and puts the line on a queue."""

    def __init__(self, lines: queue.Queue[str | None]) -> None:
        super().__init__()
        self.lines = lines
        self.setFormatter(_formatter)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.put(self.format(record))
        except Exception:
            self.handleError(record)


def stream(params: workload.Params) -> Iterator[str]:
    """Start the operation in a thread; yield its lines, one per chunk, until it ends."""
    lines: queue.Queue[str | None] = queue.Queue()
    handler = QueueLineHandler(lines)

    def work() -> None:
        try:
            workload.run(log, params)
        finally:
            lines.put(None)

    thread = threading.Thread(target=work, daemon=True)
    handler.addFilter(lambda record: record.thread == thread.ident)
    root = logging.getLogger()
    root.addHandler(handler)
    thread.start()
    try:
        while True:
            line = lines.get()
            if line is None:
                return
            yield line + "\n"
    finally:
        root.removeHandler(handler)


def run_params(environ: dict[str, Any]) -> workload.Params:
    return workload.params(environ)
