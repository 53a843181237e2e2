"""The web side of the queue tests: jobs at ``/celery/`` and ``/rq/`` handed to the workers.

``/celery-limited/`` and ``/rq-limited/`` queue the tasks the queues' time limits interrupt;
``/celery-bounded/`` and ``/rq-bounded/`` queue jobs a worker must begin within a second (``queue_timeout``).

gunicorn imports it as ``tests.apps.queue_site:application``; each worker
process makes its own store client (``queue_tasks.make_store``). ``/pid``
answers the serving process's id, so a test knows which processes it kills;
``/follow.html?job=/<kind>/<id>`` follows a job with ``EventSource`` in a browser.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Iterable

from redis import Redis
from rq import Queue

from tests.apps.queue_tasks import (
    BROKER,
    OPTIONS,
    celery_limited,
    celery_operation,
    make_store,
    rq_limited,
    rq_operation,
)
from wsgi_logstream import LogStreamMiddleware, jobs
from wsgi_logstream.celery import CeleryRunner
from wsgi_logstream.rq import RQRunner

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

RQ_QUEUE = "logstream"

store = make_store()
celery_jobs = jobs(celery_operation, store=store, runner=CeleryRunner(celery_operation), title="Celery job", **OPTIONS)
rq_queue = Queue(RQ_QUEUE, connection=Redis.from_url(BROKER))
rq_jobs = jobs(rq_operation, store=store, runner=RQRunner(rq_queue, rq_operation), title="RQ job", **OPTIONS)
celery_limited_jobs = jobs(celery_limited, store=store, runner=CeleryRunner(celery_limited), **OPTIONS)
rq_limited_jobs = jobs(rq_limited, store=store, runner=RQRunner(rq_queue, rq_limited, timeout=1), **OPTIONS)
# Jobs a worker must begin within a second of their POST, or never (queue_timeout).
celery_bounded_jobs = jobs(
    celery_operation, store=store, runner=CeleryRunner(celery_operation), queue_timeout=1.0, **OPTIONS
)
rq_bounded_jobs = jobs(rq_operation, store=store, runner=RQRunner(rq_queue, rq_operation), queue_timeout=1.0, **OPTIONS)


# Follows the job at ?job=/<kind>/<id> with EventSource and notes what it sees. It never reconnects by
# hand: after a cut, EventSource does (with Last-Event-ID).
FOLLOW_PAGE = b"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>follow</title></head>
<body><script>
window.received = []; window.ended = null; window.opens = 0;
const job = new URLSearchParams(location.search).get("job");
window.source = new EventSource(job + "?format=sse&detail=1");
window.source.onopen = () => { window.opens += 1; };
window.source.onmessage = (event) => { const e = JSON.parse(event.data); window.received.push([e.seq, e.message]); };
window.source.addEventListener("end", (event) => { window.ended = JSON.parse(event.data); window.source.close(); });
</script></body></html>
"""


def _site(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    if environ.get("PATH_INFO") == "/pid":
        body = str(os.getpid()).encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    if environ.get("PATH_INFO") == "/follow.html":
        headers = [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(FOLLOW_PAGE)))]
        start_response("200 OK", headers)
        return [FOLLOW_PAGE]
    start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "10")])
    return [b"not found\n"]


application = LogStreamMiddleware(
    _site,
    {
        "/celery": celery_jobs,
        "/rq": rq_jobs,
        "/celery-limited": celery_limited_jobs,
        "/rq-limited": rq_limited_jobs,
        "/celery-bounded": celery_bounded_jobs,
        "/rq-bounded": rq_bounded_jobs,
    },
)
