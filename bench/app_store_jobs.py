"""Bench app: ``jobs()`` on a MemoryStore or a RedisStore, for ``bench/redis_bench.py``.

Environment: ``BENCH_STORE`` (``memory`` or ``redis``), ``REDIS_URL``,
``BENCH_PREFIX``, ``BENCH_HISTORY`` (max_history and the runner's buffer:
large enough that nothing is dropped, so every figure is for every line).

``POST /?n=N&rate=R&gate=PATH&result=PATH``: the operation waits until the
file ``gate`` exists (so the viewer is connected first), then logs ``N``
records (``R`` a second, or as fast as it can with ``rate=0``), each carrying
the ``time.time()`` of its logging call, and writes its own duration (the
logging loop's, in seconds) to the file ``result``.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any
from urllib.parse import parse_qs

from wsgi_logstream import jobs, wait_cancelled
from wsgi_logstream.store import JobStore, MemoryStore

log = logging.getLogger("bench.jobs")
HISTORY = int(os.environ.get("BENCH_HISTORY", "200000"))


def operation(environ: dict[str, Any]) -> None:
    params = {key: values[-1] for key, values in parse_qs(environ.get("QUERY_STRING", "")).items()}
    n, rate = int(params["n"]), float(params.get("rate", "0"))
    gate, result = params["gate"], params["result"]
    while not os.path.exists(gate):
        if wait_cancelled(0.001):
            return
    info = log.info
    started = time.perf_counter()
    if rate:
        period = 1.0 / rate
        for i in range(n):
            due = started + i * period
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            info("line %d at %r", i + 1, time.time())
    else:
        for i in range(n):
            info("line %d at %r", i + 1, time.time())
    took = time.perf_counter() - started
    with open(result, "w") as file:
        file.write(repr(took))


def _store() -> JobStore:
    if os.environ.get("BENCH_STORE", "memory") == "redis":
        from wsgi_logstream.redis import RedisStore

        return RedisStore(
            os.environ["REDIS_URL"],
            prefix=os.environ.get("BENCH_PREFIX", "bench"),
            max_history=HISTORY,
            buffer=HISTORY,
        )
    return MemoryStore(max_history=HISTORY)


application = jobs(operation, store=_store(), formatter="%(message)s")
