"""Targets for the hostile-condition tests, served by gunicorn in a subprocess.

Every operation reports what it saw to ``/stats?key=K`` (a JSON object), so a
test can tell from outside whether the target finished, how long it took by
its own clock, and how many entries its channel ever held, while a client of
its stream is stuck, slow, gone or cut off.

Routes (all take ``key``; streams take ``format``):

- ``/flood?n=N``: logs N records as fast as it can (~100 bytes each);
  ``max_buffer`` is :data:`MAX_BUFFER`.
- ``/big?mb=M``: logs one record of M megabytes.
- ``/wait``: logs ``waiting K pid=P``, then waits for ``/release?key=K`` (or
  for the file ``flag`` to exist, which reaches a worker that no longer takes
  requests; or cancellation, or 120 s) and logs ``released K``.
- ``/tiny``: logs one line and returns (the soak).
- ``/crowd?n=N``: logs ``arrived``, then waits (at most 30 s) until N
  operations of the same key are running at once, then logs ``all N here``.
- ``/ticks``: ``on_disconnect="cancel"``: logs a tick every 2 ms until
  cancelled (or 2,000 ticks); records whether it saw ``cancelled()``.
- ``/stats``: pid, threads, descriptors, logging handlers, operations
  running, and the record of ``key``.
- ``/release?key=K``: lets ``/wait?key=K`` go on.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import defaultdict
from typing import Any
from urllib.parse import parse_qs

from tests.inproc import snapshot
from wsgi_logstream import LogStreamMiddleware, cancelled, wait_cancelled
from wsgi_logstream.capture import current_sink

log = logging.getLogger("hostile")

MAX_BUFFER = 1000
PADDING = "p" * 80

_lock = threading.Lock()
_state: defaultdict[str, dict[str, Any]] = defaultdict(dict)
_releases: defaultdict[str, threading.Event] = defaultdict(threading.Event)
_arrived: defaultdict[str, int] = defaultdict(int)
_crowd = threading.Condition(_lock)


def _query(environ: dict[str, Any]) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def _record(key: str, **values: Any) -> None:
    with _lock:
        _state[key].update(values)


def flood(environ: dict[str, Any]) -> None:
    query = _query(environ)
    key, count = query.get("key", "flood"), int(query.get("n", "1000"))
    sink = current_sink()
    assert sink is not None
    channel = sink.channel
    most = 0
    _record(key, started=True, pid=os.getpid())
    started = time.perf_counter()
    for number in range(count):
        log.info("flood %d %s", number, PADDING)
        held = len(channel._entries)
        if held > most:
            most = held
    duration = time.perf_counter() - started
    log.info("flood done %d", count)
    _record(key, finished=True, duration=duration, max_held=most, max_buffer=channel.max_entries)


def big(environ: dict[str, Any]) -> None:
    query = _query(environ)
    key, size = query.get("key", "big"), int(query.get("mb", "10")) << 20
    record = "B" * size
    log.info("big record follows")
    log.info("%s", record)
    del record
    log.info("big done")
    _record(key, finished=True)


def wait(environ: dict[str, Any]) -> None:
    query = _query(environ)
    key, flag = query.get("key", "wait"), query.get("flag")
    with _lock:
        release = _releases[key]
    _record(key, started=True, pid=os.getpid())
    log.info("waiting %s pid=%d", key, os.getpid())
    deadline = time.monotonic() + 120
    while not release.is_set() and not cancelled() and time.monotonic() < deadline:
        if flag is not None and os.path.exists(flag):
            break
        release.wait(0.05)
    log.info("released %s", key)
    _record(key, finished=True)


def tiny() -> None:
    log.info("tiny")


def crowd(environ: dict[str, Any]) -> None:
    query = _query(environ)
    key, expected = query.get("key", "crowd"), int(query.get("n", "2"))
    with _crowd:
        _arrived[key] += 1
        _crowd.notify_all()
    log.info("arrived")
    with _crowd:
        everyone = _crowd.wait_for(lambda: _arrived[key] >= expected, timeout=30)
    log.info("all %d here" if everyone else "only some of %d here", expected)


def ticks(environ: dict[str, Any]) -> None:
    key = _query(environ).get("key", "ticks")
    number = 0
    for number in range(2000):
        log.info("tick %d", number)
        if wait_cancelled(0.002):
            break
    with _lock:
        totals = _state[key]
        totals["runs"] = totals.get("runs", 0) + 1
        totals["cancelled"] = totals.get("cancelled", 0) + (1 if cancelled() else 0)
        totals["ticks"] = totals.get("ticks", 0) + number + 1


def site(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    path, query = environ.get("PATH_INFO", ""), _query(environ)
    if path == "/release":
        with _lock:
            _releases[query.get("key", "wait")].set()
        body = b"released\n"
    elif path == "/stats":
        with _lock:
            state = dict(_state.get(query.get("key", ""), {}))
        running = sum(app.running for app in (*streams.routes.values(), *cancelling.routes.values()))
        body = json.dumps({"pid": os.getpid(), "running": running, "state": state, **snapshot()}).encode()
    else:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


streams = LogStreamMiddleware(
    site,
    {"/flood": flood, "/big": big, "/wait": wait, "/tiny": tiny, "/crowd": crowd},
    max_buffer=MAX_BUFFER,
    heartbeat=1,
)
cancelling = LogStreamMiddleware(streams, {"/ticks": ticks}, on_disconnect="cancel", max_buffer=MAX_BUFFER)
application = cancelling
