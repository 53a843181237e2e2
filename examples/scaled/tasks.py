"""The operation, as a Celery task and as an RQ job: imported by the web tier and by both workers.

Everything here needs ``REDIS_URL`` (default ``redis://127.0.0.1:6379/0``):
Celery's broker, RQ's queue and the jobs' store all live in that Redis. See
``examples/scaled/README.md`` for the whole deployment.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from celery import Celery

from wsgi_logstream import progress, wait_cancelled
from wsgi_logstream.celery import logstream_task
from wsgi_logstream.redis import RedisStore
from wsgi_logstream.rq import logstream_job

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
RQ_QUEUE = "logstream"
#: How each line of a job reads (the web tier uses the same).
OPTIONS = {"formatter": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"}

log = logging.getLogger("import")


def make_store() -> RedisStore:
    """The jobs' store. A function, not a store: each process (each gunicorn worker, each
    Celery pool child, each RQ work horse) makes its own client after it was forked."""
    return RedisStore(REDIS_URL)


celery_app = Celery("examples.scaled.tasks", broker=REDIS_URL)
celery_app.conf.update(broker_connection_retry_on_startup=True, task_ignore_result=True)


def run_import(payload: dict[str, Any]) -> None:
    """The long operation: store ``rows`` rows (form field, default 20), ``delay`` seconds each (default 0.5)."""
    form = payload["form"]
    rows = int(form.get("rows") or 20)
    delay = float(form.get("delay") or 0.5)
    if not (1 <= rows <= 10_000 and 0 <= delay <= 10):
        raise ValueError(f"rows must be 1..10000 and delay 0..10 seconds, got rows={rows} delay={delay}")
    log.info("importing %d rows on %s, process %d", rows, socket.gethostname(), os.getpid())
    for row in range(1, rows + 1):
        progress(row - 1, rows)
        if wait_cancelled(delay):
            log.warning("cancelled before row %d", row)
            return
        log.info("row %d stored", row)
    progress(rows, rows)


@logstream_task(celery_app, store=make_store, options=OPTIONS)
def celery_import(payload: dict[str, Any]) -> None:
    """The import, run by a Celery worker."""
    run_import(payload)


@logstream_job(store=make_store, options=OPTIONS)
def rq_import(payload: dict[str, Any]) -> None:
    """The import, run by an RQ worker."""
    run_import(payload)
