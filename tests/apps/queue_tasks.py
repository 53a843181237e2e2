"""A Celery task and an RQ job that the queue tests hold and release: imported by the workers and the web.

Configured by the environment the test gives every process it starts:

- ``LOGSTREAM_STORE``: the Redis URL of the jobs (the Redis store);
- ``LOGSTREAM_LEASE``: the store's lease, in seconds;
- ``LOGSTREAM_BROKER``: the Redis URL of Celery's broker and RQ's queue;
- ``LOGSTREAM_HOLD``: a directory. The operation logs ``first <key> pid=<pid>``
  and ``detail <key>`` (DEBUG: the job captures it, the workers' INFO logs must not show it),
  and then waits (at most 60 s) for the file ``<key>`` to appear there, which
  the test creates only after its viewers have seen that line: a pass proves
  the line was streamed while the operation was blocked. Then it logs
  ``second <key>`` and ``line 1..3 of <key>``. A cancel while it waits makes
  it log ``cancelled <key> after <seconds>`` (from the cancel file the test
  writes, to measure how long the cancel took to arrive) and return.

``celery_limited`` and ``rq_limited`` log the queue's own id for the task
(``current_task``, ``get_current_job()``) and wait until the queue's time
limit (1 s) interrupts them.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from celery import Celery

from wsgi_logstream import cancelled, wait_cancelled
from wsgi_logstream.celery import logstream_task
from wsgi_logstream.redis import RedisStore
from wsgi_logstream.rq import logstream_job
from wsgi_logstream.store import JobStore

log = logging.getLogger("tests.queue.task")
STORE_URL = os.environ.get("LOGSTREAM_STORE", "")
BROKER = os.environ.get("LOGSTREAM_BROKER", "redis://127.0.0.1:6379/0")
HOLD = Path(os.environ.get("LOGSTREAM_HOLD", "/nonexistent"))
#: How long a worker's lease lasts without renewal (the Redis store's option).
LEASE = float(os.environ.get("LOGSTREAM_LEASE", "3"))
OPTIONS = {"formatter": "%(levelname)s %(name)s: %(message)s", "level": "DEBUG"}


def make_store() -> JobStore:
    """The store every process of the test deployment shares."""
    return RedisStore(STORE_URL, lease=LEASE)


celery_app = Celery("tests.apps.queue_tasks", broker=BROKER)
celery_app.conf.update(
    broker_connection_retry_on_startup=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    worker_send_task_events=False,
)


def operation(payload: dict[str, Any]) -> None:
    key = payload["form"].get("key") or payload["query"].get("key", "k")
    log.info("first %s pid=%d", key, os.getpid())
    log.debug("detail %s", key)  # below the workers' own level: the job's alone
    release = HOLD / key
    deadline = time.monotonic() + 60
    while not release.exists():
        if wait_cancelled(0.02):
            asked = HOLD / f"{key}.cancel-asked"
            after = time.time() - float(asked.read_text()) if asked.exists() else float("nan")
            log.info("cancelled %s after %.3f", key, after)
            return
        if time.monotonic() > deadline:
            log.error("never released %s", key)
            return
    log.info("second %s cancelled=%s", key, cancelled())
    for number in (1, 2, 3):
        log.info("line %d of %s", number, key)


@logstream_task(celery_app, store=make_store, options=OPTIONS)
def celery_operation(payload: dict[str, Any]) -> None:
    """The operation as a Celery task."""
    operation(payload)


@logstream_job(store=make_store, options=OPTIONS)
def rq_operation(payload: dict[str, Any]) -> None:
    """The operation as an RQ job."""
    operation(payload)


def held_until_interrupted(task_id: str) -> None:
    """Log the queue's own id for the task, then wait (30 s at most) for the queue's time limit to interrupt."""
    log.info("task id %s", task_id)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(0.02)
    log.error("the time limit never interrupted the task")


@logstream_task(celery_app, store=make_store, options=OPTIONS, soft_time_limit=1)
def celery_limited(payload: dict[str, Any]) -> None:
    """Interrupted by Celery's soft time limit (a signal in the pool child)."""
    from celery import current_task

    held_until_interrupted(current_task.request.id)


@logstream_job(store=make_store, options=OPTIONS)
def rq_limited(payload: dict[str, Any]) -> None:
    """Interrupted by RQ's job timeout (a signal in the work horse); enqueued with ``timeout=1``."""
    from rq import get_current_job

    job = get_current_job()
    held_until_interrupted("none" if job is None else job.id)
