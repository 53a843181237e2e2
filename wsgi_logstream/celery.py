"""Jobs run by Celery workers: ``pip install 'wsgi-logstream[celery]'``.

The operation is an ordinary function made a Celery task by
:func:`logstream_task`; the web tier hands each new job to it with
:class:`CeleryRunner`::

    # tasks.py, imported by the web app and by the worker
    from celery import Celery
    from wsgi_logstream.celery import logstream_task
    from wsgi_logstream.redis import RedisStore

    app = Celery("tasks", broker="redis://localhost:6379/0")

    def make_store():
        return RedisStore("redis://localhost:6379/1")

    @logstream_task(app, store=make_store)
    def reindex(payload):
        logging.getLogger("reindex").info("reindexing %s", payload["form"].get("index"))

    # the web app
    from wsgi_logstream import jobs
    from wsgi_logstream.celery import CeleryRunner
    application = jobs(reindex, store=make_store(), runner=CeleryRunner(reindex))

``POST /`` creates the job ``queued``, sends the task (its Celery task id is
the job's id) and answers ``303``; a worker runs the function with
:func:`wsgi_logstream.runner.run_job`, which marks the job running and ends
it. The function's records (and those of threads it starts with
:class:`wsgi_logstream.Thread`) go to the job; the worker's own logging, as
Celery set it up (``worker_hijack_root_logger``, ``--logfile``, its level),
sees what it would have seen without this module, and nothing is added to or
removed from it. The function runs in the worker's own thread, so
``current_task``, ``self.request`` of a bound task and Celery's time limits
behave as usual; a time limit that interrupts it ends the job as ``error``.

``store`` is a store, or a function that makes one: prefork workers call it
once in each child process, after the fork (a Redis client must not cross a
fork). Cancelling a job (``POST /<id>/cancel``) makes ``cancelled()`` true in
the task wherever it runs; a job cancelled while queued never starts. The task
returns the job's final status (``"ok"``, ``"error"``, ...), or None if it did
not run it.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from celery import Celery, Task

from .options import Options
from .runner import StoreSource, _job_status_function, _QueueRunner, per_process_store

__all__ = ["CeleryRunner", "logstream_task"]


def logstream_task(
    app: Celery,
    *,
    store: StoreSource,
    options: Options | Mapping[str, Any] | None = None,
    **task_options: Any,
) -> Callable[[Callable[..., Any]], Task]:
    """Make ``func`` a Celery task that runs as a job of ``store``.

    The task takes the job's id first, then ``func``'s own arguments
    (:class:`CeleryRunner` sends ``(job_id, payload)``). ``options`` are
    :func:`~wsgi_logstream.runner.run_job`'s (``level``, ``loggers``,
    ``formatter``, ``redact``, ``traceback``); ``task_options`` go to
    ``app.task`` (``name`` defaults to ``func``'s module and name).
    """
    get_store = per_process_store(store)

    def decorate(func: Callable[..., Any]) -> Task:
        if not callable(func):
            raise TypeError(f"logstream_task decorates a function, got {func!r}")

        run_as_job = _job_status_function(get_store, func, options)
        # Not functools.wraps: Celery checks calls against the wrapper's own
        # signature, which takes the job id first.
        run_as_job.__module__ = func.__module__
        name = getattr(func, "__name__", "")
        # Celery compiles a signature check named after the function: a lambda's "<lambda>" will not do.
        run_as_job.__name__ = name if name.isidentifier() else "logstream_task"
        run_as_job.__qualname__ = getattr(func, "__qualname__", run_as_job.__name__)
        run_as_job.__doc__ = func.__doc__
        given = {"name": f"{func.__module__}.{run_as_job.__qualname__}", **task_options}
        task: Task = app.task(**given)(run_as_job)
        return task

    return decorate


class CeleryRunner(_QueueRunner):
    """Hands each job :func:`~wsgi_logstream.jobs` creates to ``task`` (one made by :func:`logstream_task`).

    ``apply_options`` go to every ``apply_async`` call (``queue``,
    ``priority``, ...). The job's id is the Celery task id. ``start(store, *args, title=, owner=, timeout=,
    **kwargs)`` creates a job by code and sends the task for it with ``args``/``kwargs``; it returns the job's id.
    """

    def __init__(self, task: Task, **apply_options: Any) -> None:
        if not isinstance(task, Task):
            raise TypeError(f"CeleryRunner takes a Celery task (see logstream_task), got {task!r}")
        if "task_id" in apply_options or "args" in apply_options:
            raise TypeError("CeleryRunner sets task_id and args itself (the job's id and payload)")
        self.task = task
        self.apply_options = apply_options

    def _send(self, job_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.task.apply_async(args=(job_id, *args), kwargs=kwargs, task_id=job_id, **self.apply_options)
