"""The site behind the servers of ``tests/proxies.py``: standard library and the package only.

uWSGI and mod_wsgi embed Debian's Python, which has neither pytest nor psutil,
so this module imports neither (``tests/nginx.py``'s site imports the test
helpers). It serves:

* ``/ops/run?key=K`` (any format): the handshake operation of
  ``tests/apps/handshake.py``: ``first K``, then a wait (at most 30 s) until
  ``/release?key=K``, then ``second K released=True`` and ``line 1..3 of K``;
* ``/events/run?key=K``: the same as SSE only (what a page's EventSource opens);
* ``/jobs/``: jobs whose target is that same operation (``POST /jobs/?key=K``);
* ``/start-freeze?port=P``: starts a job directly (not through ``POST``) whose
  target connects to the test's port ``P``, waits there (at most 30 s) for a
  byte and answers ``done``: the byte is sent once the response has been read,
  so ``done`` comes back only if the job's thread runs after its request ended;
* ``/hosting``: what :func:`wsgi_logstream.hosting.threads_disabled_reason` says here;
* ``/page``: an ordinary 6 KB HTML page.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any, Iterable
from urllib.parse import parse_qs

from wsgi_logstream import LogStreamMiddleware, jobs
from wsgi_logstream.hosting import threads_disabled_reason

log = logging.getLogger("deploy.site")
_lock = threading.Lock()
_releases: dict[str, threading.Event] = {}


def _query(environ: dict[str, Any], name: str, default: str = "") -> str:
    return parse_qs(str(environ.get("QUERY_STRING", ""))).get(name, [default])[0]


def _event(key: str) -> threading.Event:
    with _lock:
        return _releases.setdefault(key, threading.Event())


def operation(environ: dict[str, Any]) -> None:
    key = _query(environ, "key", "k")
    log.info("first %s", key)
    released = _event(key).wait(30)
    log.info("second %s released=%s", key, released)
    for number in (1, 2, 3):
        log.info("line %d of %s", number, key)
    with _lock:
        _releases.pop(key, None)


def freeze_target(environ: dict[str, Any]) -> None:
    port = int(_query(environ, "port"))
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        log.info("connected to the test")
        got = conn.recv(1)
        log.info("got %r from the test", got)
        conn.sendall(b"done")


PAGE = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>An ordinary page</title></head><body>'
    + "".join(f"<p>Paragraph {n} of an ordinary page, which a proxy may buffer and compress.</p>" for n in range(60))
    + "</body></html>"
).encode()

deploy_jobs = jobs(operation, title="Deploy jobs", heartbeat=5)
freeze_jobs = jobs(freeze_target, title="Freeze", heartbeat=5)


def _site(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")
    content_type = "text/plain; charset=utf-8"
    if path == "/release":
        _event(_query(environ, "key", "k")).set()
        body = b"released\n"
    elif path == "/start-freeze":
        # Straight to start(): shows what the server does to a job's thread, whatever POST answers.
        job = freeze_jobs.start({"QUERY_STRING": environ.get("QUERY_STRING", "")})
        body = f"/freeze/{job.id}\n".encode()
    elif path == "/hosting":
        body = f"{threads_disabled_reason(environ)}\n".encode()
    elif path == "/page":
        body, content_type = PAGE, "text/html; charset=utf-8"
    else:
        start_response("404 Not Found", [("Content-Type", content_type), ("Content-Length", "10")])
        return [b"not found\n"]
    start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


_streams = LogStreamMiddleware(
    _site, {"/ops/run": operation, "/events/run": operation}, heartbeat=5, title="Deploy test"
)
# The jobs apps carry their own options (built by jobs() above), so they are mounted by a middleware of their own.
application = LogStreamMiddleware(_streams, {"/jobs": deploy_jobs, "/freeze": freeze_jobs})
