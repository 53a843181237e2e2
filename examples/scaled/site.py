"""The web tier: any number of gunicorn instances, none of which runs an operation itself.

``POST /celery/`` and ``POST /rq/`` create a job ``queued`` in Redis and hand
it to a Celery or an RQ worker; every instance lists, streams, resumes and
cancels every job, because jobs live in Redis. See ``examples/scaled/README.md``.
"""

from __future__ import annotations

import html
import os
import socket
from typing import TYPE_CHECKING, Iterable

from redis import Redis
from rq import Queue

from examples.scaled.tasks import OPTIONS, REDIS_URL, RQ_QUEUE, celery_import, make_store, rq_import
from wsgi_logstream import LogStreamMiddleware, jobs
from wsgi_logstream.celery import CeleryRunner
from wsgi_logstream.rq import RQRunner

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

# gunicorn imports this module in each worker process (no --preload): one store client per process.
store = make_store()
celery_jobs = jobs(celery_import, store=store, runner=CeleryRunner(celery_import), title="Import (Celery)", **OPTIONS)
rq_jobs = jobs(
    rq_import,
    store=store,
    runner=RQRunner(Queue(RQ_QUEUE, connection=Redis.from_url(REDIS_URL)), rq_import),
    title="Import (RQ)",
    **OPTIONS,
)


def home(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    if environ.get("PATH_INFO", "/") != "/":
        start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "10")])
        return [b"not found\n"]
    served_by = html.escape(f"{socket.gethostname()}, process {os.getpid()}")
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Scaled-out imports</title></head><body>'
        "<h1>Imports</h1><ul>"
        '<li><a href="celery/">run by a Celery worker</a></li>'
        '<li><a href="rq/">run by an RQ worker</a></li>'
        f"</ul><p>This page was served by {served_by}.</p></body></html>"
    ).encode()
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))])
    return [body]


application = LogStreamMiddleware(home, {"/celery": celery_jobs, "/rq": rq_jobs})
