"""A host app whose jobs live in Redis, for tests that run it in several gunicorn instances.

Configured from the environment, so every instance (and every worker) shares
the same jobs: ``REDIS_URL``, ``LOGSTREAM_PREFIX``, ``LOGSTREAM_LEASE``
(seconds, default 10), ``LOGSTREAM_BUFFER`` (entries, default 10000).

Routes: ``/jobs/...`` the jobs app; ``/plain`` a plain ``logstream()`` stream
(no store); anything else, a host route that answers ``hello``.

The target is driven by the ``POST``'s query string, so a test controls a job
running in another process through Redis keys it sets:

- ``first=N``: log ``line 00001`` .. ``line N`` at once;
- ``gate=KEY``: then wait until ``KEY`` exists in Redis (a cancel ends it);
- ``then=M``: then log M more lines, ``every`` seconds apart (default 0);
- ``until=KEY``: instead of ``then``, log a line every ``every`` seconds
  until ``KEY`` exists (Redis being unreachable meanwhile counts as "not yet");
- ``tally=PATH``: write the number of the last line logged to ``PATH``, so a
  test sees the operation go on while Redis is away.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Iterable
from urllib.parse import parse_qs
from wsgiref.util import shift_path_info

import redis

from wsgi_logstream import cancelled, jobs, logstream, wait_cancelled
from wsgi_logstream.redis import RedisStore

log = logging.getLogger("tests.redis_jobs")

REDIS_URL = os.environ["REDIS_URL"]
_control = redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=1)


def _exists(key: str) -> bool:
    try:
        return bool(_control.exists(key))
    except redis.RedisError:
        return False


def operation(environ: dict[str, Any]) -> None:
    params = {key: values[-1] for key, values in parse_qs(environ.get("QUERY_STRING", "")).items()}
    every = float(params.get("every", "0"))
    tally = params.get("tally")
    n = 0

    def line() -> None:
        nonlocal n
        n += 1
        log.info("line %05d", n)
        if tally is not None:
            with open(tally + ".new", "w") as file:
                file.write(str(n))
            os.replace(tally + ".new", tally)

    for _ in range(int(params.get("first", "0"))):
        line()
    gate = params.get("gate")
    if gate is not None:
        while not _exists(gate):
            if wait_cancelled(0.02):
                return
    until = params.get("until")
    if until is not None:
        while not _exists(until) and not cancelled():
            line()
            wait_cancelled(every)
        return
    for _ in range(int(params.get("then", "0"))):
        if cancelled():
            return
        line()
        if every:
            wait_cancelled(every)


store = RedisStore(
    REDIS_URL,
    prefix=os.environ.get("LOGSTREAM_PREFIX", "wsgi_logstream"),
    lease=float(os.environ.get("LOGSTREAM_LEASE", "10")),
    poll=min(0.5, float(os.environ.get("LOGSTREAM_LEASE", "10")) / 2),
    buffer=int(os.environ.get("LOGSTREAM_BUFFER", "10000")),
)
jobs_app = jobs(operation, store=store, formatter="%(message)s", heartbeat=1.0)
plain_app = logstream(lambda: log.info("plain line"), formatter="%(message)s")


def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    first = shift_path_info(environ)
    if first == "jobs":
        return jobs_app(environ, start_response)
    if first == "plain":
        return plain_app(environ, start_response)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "6")])
    return [b"hello\n"]
