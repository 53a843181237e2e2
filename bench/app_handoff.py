"""Ceiling: a bare thread hand-off, the least any design with an operation thread can pay per line.

The workload's lines, pre-formatted with an f-string as ``app_bare.py`` does
(no ``logging``), are made in a thread of their own and handed to the
response's generator through ``queue.SimpleQueue`` (a C-implemented queue: the
cheapest blocking primitive CPython has), one line per chunk. The bare
generator (``app_bare.py``) has no hand-off at all; the difference between
the two is what the hand-off itself costs, which no library with an
operation thread can avoid.
"""

from __future__ import annotations

import queue
import threading
from typing import TYPE_CHECKING, Iterable, Iterator

import workload

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


def _lines(params: workload.Params) -> Iterator[bytes]:
    lines: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()

    def produce() -> None:
        try:
            for line in workload.bare_lines(params):
                lines.put(line)
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
