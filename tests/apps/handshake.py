"""A WSGI app whose operation waits for the test to say it has read a line.

``/op?key=K`` logs ``first K``, then waits (at most 30 s) until ``/release?key=K``
is requested, then logs ``second K`` and returns. The test requests
``/release`` only after its client has read ``first K``: if the line had not
been streamed while the operation ran, the test would time out, not pass.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from urllib.parse import parse_qs

from wsgi_logstream import LogStreamMiddleware

log = logging.getLogger("handshake")
releases: defaultdict[str, threading.Event] = defaultdict(threading.Event)
_lock = threading.Lock()


def _key(environ):
    return parse_qs(environ.get("QUERY_STRING", "")).get("key", ["k"])[0]


def _event(key: str) -> threading.Event:
    with _lock:
        return releases[key]


def operation(environ):
    key = _key(environ)
    log.info("first %s", key)
    released = _event(key).wait(30)
    log.info("second %s released=%s", key, released)


def site(environ, start_response):
    if environ["PATH_INFO"] == "/release":
        _event(_key(environ)).set()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"released\n"]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]


application = LogStreamMiddleware(site, {"/op": operation}, heartbeat=5)
