"""The operation every contender runs, and the line it logs.

One definition for all of them, so that contenders differ only in how a record
travels from the ``logging`` call to the client, never in what is logged.

A record's message is ``seq=0000042 t=1712345678.123456 xxxxxxxx#``: its
sequence number (the client checks count and order), the ``time.time()`` of the
call (the client, on the same machine and clock, subtracts it from the time it
read the line) and a ``#`` as the last character, which appears nowhere else in
a response, so the client counts records that have arrived with ``bytes.count``
whatever the framing (text, SSE, HTTP chunks). With the default formatter the
line is 80 bytes, newline excluded.

After the last record the operation logs ``END elapsed=... at=...``: its own
duration and the ``time.time()`` at which it ended, which the client uses to
count how many records were still in flight (the backlog) at that moment.

Parameters come in the query string: ``workload`` (``throughput``, ``latency``,
``idle``, ``scale``), ``records``, ``interval`` (seconds between records, for
latency and scale), ``hold`` (how long idle and scale operations live) and
``start`` (latency: seconds before the first record).
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator
from urllib.parse import parse_qs

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"  # wsgi_logstream's default
LOGGER = "bench"
PAD = "x" * 8
MESSAGE = "seq=%07d t=%.6f " + PAD + "#"
END = "END elapsed=%.6f at=%.6f"


@dataclass(frozen=True)
class Params:
    workload: str = "throughput"
    records: int = 1000
    interval: float = 0.005
    hold: float = 60.0
    start: float = 0.0  # latency: seconds before the first record (see docs/benchmarks.md, round two)


def params(environ: dict[str, Any]) -> Params:
    """The workload a request asks for (its query string)."""
    query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    return Params(
        workload=query.get("workload", "throughput"),
        records=int(query.get("records", "1000")),
        interval=float(query.get("interval", "0.005")),
        hold=float(query.get("hold", "60")),
        start=float(query.get("start", "0")),
    )


def run(log: logging.Logger, p: Params, sleep: Callable[[float], None] = time.sleep) -> None:
    """The operation: log what the workload asks for, as a real operation would."""
    info = log.info
    clock = time.time
    if p.workload == "throughput":
        started = time.perf_counter()
        for i in range(p.records):
            info(MESSAGE, i, clock())
        info(END, time.perf_counter() - started, clock())
    elif p.workload == "latency":
        if p.start:
            sleep(p.start)
        started = time.perf_counter()
        due = started
        for i in range(p.records):
            info(MESSAGE, i, clock())
            due += p.interval
            delay = due - time.perf_counter()
            if delay > 0:
                sleep(delay)
        info(END, time.perf_counter() - started, clock())
    elif p.workload == "idle":
        info(MESSAGE, 0, clock())
        sleep(p.hold)
    elif p.workload == "scale":
        # One record at once (the client then knows the stream is live), then
        # one every ``interval`` from a random phase, so that thousands of
        # streams do not all log in the same millisecond.
        info(MESSAGE, 0, clock())
        sleep(random.uniform(0, p.interval))
        ends = time.monotonic() + p.hold
        i = 1
        while time.monotonic() < ends:
            info(MESSAGE, i, clock())
            i += 1
            sleep(p.interval)
    else:
        raise ValueError(f"unknown workload {p.workload!r}")


def bare_lines(p: Params, sleep: Callable[[float], None] = time.sleep) -> Iterator[bytes]:
    """The same lines as :func:`run`, pre-formatted and yielded one by one, with no ``logging``."""
    prefix = logging.Formatter(FORMAT).format(logging.LogRecord(LOGGER, logging.INFO, "", 0, "", None, None))
    clock = time.time
    if p.workload == "throughput":
        started = time.perf_counter()
        for i in range(p.records):
            yield f"{prefix}seq={i:07d} t={clock():.6f} {PAD}#\n".encode()
        yield f"{prefix}{END % (time.perf_counter() - started, clock())}\n".encode()
    elif p.workload == "latency":
        if p.start:
            sleep(p.start)
        started = time.perf_counter()
        due = started
        for i in range(p.records):
            yield f"{prefix}seq={i:07d} t={clock():.6f} {PAD}#\n".encode()
            due += p.interval
            delay = due - time.perf_counter()
            if delay > 0:
                sleep(delay)
        yield f"{prefix}{END % (time.perf_counter() - started, clock())}\n".encode()
    elif p.workload == "idle":
        yield f"{prefix}seq={0:07d} t={clock():.6f} {PAD}#\n".encode()
        sleep(p.hold)
    else:
        raise ValueError(f"unknown workload {p.workload!r}")
