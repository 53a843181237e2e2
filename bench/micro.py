"""In-process measurements: the producer ceiling and what a ``logging`` call costs.

``python bench/micro.py producer --records N`` runs the throughput operation
(:func:`workload.run`, the very code the servers run) with its logger's records
going through a formatting handler into a ``deque``: the fastest a producer can
make lines, and the operation's duration with no stream attached.

``python bench/micro.py cost --calls N`` times single calls, each the best of
several ``timeit`` repeats:

* ``plain_info``: ``logger.info(...)`` through that formatting handler;
* ``stream_info``: the same call inside a bound ``wsgi_logstream`` sink (the
  record is formatted once and appended to a channel nobody reads);
* ``disabled_debug_before`` / ``disabled_debug_after``: a ``logger.debug()``
  that no handler wants, elsewhere in the process, before and after
  ``wsgi_logstream.capture.install()`` wraps ``Logger.isEnabledFor``;
* ``plain_info_after``: ``plain_info`` again after ``install()``, outside any
  stream (the ``callHandlers`` wrapper's cost on the host's own records).

Both print one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import timeit
from collections import deque
from typing import Any

import workload

from wsgi_logstream import capture
from wsgi_logstream.channel import Channel


class DequeHandler(logging.Handler):
    """Formats each record into a bounded deque: a handler that does the work and keeps nothing."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.lines: deque[str] = deque(maxlen=size)
        self.setFormatter(logging.Formatter(workload.FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def _plain_logger(name: str, size: int) -> logging.Logger:
    log = logging.getLogger(name)
    log.handlers[:] = [DequeHandler(size)]
    log.setLevel(logging.INFO)
    log.propagate = False
    return log


def producer(records: int) -> dict[str, Any]:
    log = _plain_logger(workload.LOGGER, records + 1)
    cpu = time.process_time()
    started = time.perf_counter()
    workload.run(log, workload.Params(workload="throughput", records=records))
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu
    handler = log.handlers[0]
    assert isinstance(handler, DequeHandler)
    lines = handler.lines
    if len(lines) != records + 1 or f"seq={records - 1:07d} " not in lines[-2]:
        raise AssertionError(f"the producer made {len(lines)} lines, expected {records + 1}")
    return {
        "ok": True,
        "errors": [],
        "received": records,
        "expected": records,
        "op_seconds": elapsed,
        "seconds": elapsed,
        "lines_per_s": records / elapsed,
        "cpu_per_line": cpu / records,
    }


def _best(stmt: Any, calls: int, repeat: int = 7) -> float:
    """Seconds per call, the best of ``repeat`` runs of ``calls`` calls."""
    return min(timeit.repeat(stmt, number=calls, repeat=repeat)) / calls


def cost(calls: int) -> dict[str, Any]:
    if capture._installed:
        raise AssertionError("capture is already installed: the 'before' figures would be wrong")
    plain = _plain_logger("bench.plain", 1000)
    elsewhere = logging.getLogger("bench.elsewhere")  # level NOTSET: the root's WARNING applies
    now = time.time()
    result: dict[str, Any] = {}
    result["plain_info"] = _best(lambda: plain.info(workload.MESSAGE, 1, now), calls)
    result["disabled_debug_before"] = _best(lambda: elsewhere.debug(workload.MESSAGE, 1, now), calls * 10)

    capture.install()
    result["disabled_debug_after"] = _best(lambda: elsewhere.debug(workload.MESSAGE, 1, now), calls * 10)
    result["plain_info_after"] = _best(lambda: plain.info(workload.MESSAGE, 1, now), calls)

    streamed = logging.getLogger("bench.streamed")  # no handler, root at WARNING: only the sink wants INFO
    channel = Channel(1000)
    sink = capture.Sink(channel, level=logging.INFO, loggers=None, formatter=logging.Formatter(workload.FORMAT))
    result["stream_info"] = capture.run_bound(
        sink, lambda: _best(lambda: streamed.info(workload.MESSAGE, 1, now), calls)
    )
    if channel.records < calls:
        raise AssertionError(f"the sink received {channel.records} records, expected at least {calls}")
    result["ok"] = True
    result["errors"] = []
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    sub.add_parser("producer").add_argument("--records", type=int, required=True)
    sub.add_parser("cost").add_argument("--calls", type=int, default=20000)
    args = parser.parse_args(argv)
    result = producer(args.records) if args.mode == "producer" else cost(args.calls)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
