"""Second ceiling: the bare hand-off fed by ``logging``, the least a design that captures ``logging`` can pay.

The operation is the workload's own (:func:`workload.run`, as every other
contender runs it): its logger's records go through a plain formatting handler
(the library's default format) that puts each line, encoded, into the same
``queue.SimpleQueue`` the bare hand-off (``app_handoff.py``) uses; the
response's generator yields one line per chunk. Against the bare hand-off it
adds only ``logging``'s own path (a ``LogRecord`` and a ``Formatter`` per line);
against it, the library adds only what it does itself (capture, the channel,
the response and its format).
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import TYPE_CHECKING, Iterable, Iterator

import workload

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


class _QueueHandler(logging.Handler):
    def __init__(self, lines: queue.SimpleQueue[bytes | None]) -> None:
        super().__init__()
        self.lines = lines
        self.setFormatter(logging.Formatter(workload.FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.put((self.format(record) + "\n").encode())


def _lines(params: workload.Params) -> Iterator[bytes]:
    lines: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
    # A logger of its own per request, outside logging's registry (same name, so the same lines as the
    # other contenders): its handler gets this request's records alone, with no filter by thread, and
    # nothing stays behind when the request ends.
    log = logging.Logger(workload.LOGGER, logging.INFO)
    log.addHandler(_QueueHandler(lines))

    def produce() -> None:
        try:
            workload.run(log, params)
        finally:
            lines.put(None)

    threading.Thread(target=produce, daemon=True).start()
    while True:
        line = lines.get()
        if line is None:
            return
        yield line


def application(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"), ("Cache-Control", "no-cache")])
    return _lines(workload.params(environ))
