"""The Celery and RQ integrations in this process: what they check, and the job a task runs.

Celery runs its task here with ``apply()`` (no worker, no broker) and RQ's
wrapper is called as a work horse would call it, both on a
:class:`MemoryStore`. Real workers, brokers and web servers are in
``tests/test_scaled_queues.py``.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from celery import Celery
from redis import Redis
from rq import Queue

from wsgi_logstream.celery import CeleryRunner, logstream_task
from wsgi_logstream.rq import RQRunner, logstream_job
from wsgi_logstream.runner import new_job
from wsgi_logstream.store import MemoryStore

log = logging.getLogger("tests.celery_and_rq")


def _lines(store: MemoryStore, job_id: str) -> list[str]:
    reader = store.reader(job_id, 0)
    _missed, entries = reader.take()
    reader.close()
    return [entry.line for entry in entries if entry.kind == "log"]


def test_a_celery_task_made_by_logstream_task_runs_as_the_job_whose_id_it_is_given() -> None:
    app = Celery("tests.celery_and_rq", broker="memory://", set_as_current=False)
    store = MemoryStore()
    made: list[int] = []

    def make_store() -> MemoryStore:
        made.append(1)
        return store

    def reindex(payload: dict[str, Any], *, shard: int) -> None:
        """Reindex one shard."""
        log.info("reindexing %s shard %d", payload["form"]["index"], shard)

    task = logstream_task(app, store=make_store, options={"formatter": "%(message)s"})(reindex)
    assert (
        task.name
        == f"{__name__}.test_a_celery_task_made_by_logstream_task_runs_as_the_job_whose_id_it_is_given.<locals>.reindex"
    )
    job_id = new_job(store, title="Reindex")
    result = task.apply(args=(job_id, {"form": {"index": "users"}}), kwargs={"shard": 3})
    assert result.get() == "ok"
    assert _lines(store, job_id) == ["reindexing users shard 3"]
    assert store.get(job_id).status == "ok"  # type: ignore[union-attr]
    # A second delivery of the same job runs nothing and says so.
    assert task.apply(args=(job_id, {"form": {"index": "users"}}), kwargs={"shard": 3}).get() is None
    assert made == [1], "the store is made once per process"


def test_two_functions_made_tasks_by_one_decorator_keep_their_own_names() -> None:
    app = Celery("tests.celery_and_rq", broker="memory://", set_as_current=False)
    decorate = logstream_task(app, store=MemoryStore())

    def first() -> None: ...

    def second() -> None: ...

    assert decorate(first).name != decorate(second).name


def test_the_celery_and_rq_runners_refuse_what_they_cannot_queue() -> None:
    app = Celery("tests.celery_and_rq", broker="memory://", set_as_current=False)
    task = logstream_task(app, store=MemoryStore())(lambda: None)
    with pytest.raises(TypeError, match="Celery task"):
        CeleryRunner(lambda: None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="task_id and args"):
        CeleryRunner(task, task_id="fixed")
    with pytest.raises(TypeError, match=r"rq\.Queue"):
        RQRunner("default", "tasks.reindex")  # type: ignore[arg-type]
    queue = Queue("never-used", connection=Redis(port=1))  # no connection is made until a job is enqueued
    with pytest.raises(TypeError, match="job_id, args and kwargs"):
        RQRunner(queue, "tasks.reindex", job_id="fixed")
    with pytest.raises(TypeError, match="function or its import path"):
        RQRunner(queue, 42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="JobStore or a function"):
        logstream_job(store="redis://")  # type: ignore[arg-type]


def test_an_rq_function_made_by_logstream_job_runs_as_the_job_and_keeps_its_import_name() -> None:
    store = MemoryStore()

    @logstream_job(store=store, options={"formatter": "%(message)s"})
    def export(payload: dict[str, Any]) -> None:
        log.info("exporting %s", payload["query"]["table"])

    assert export.__name__ == "export" and export.__module__ == __name__
    job_id = new_job(store)
    assert export(job_id, {"query": {"table": "users"}}) == "ok"
    assert _lines(store, job_id) == ["exporting users"]
