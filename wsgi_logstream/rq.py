"""Jobs run by RQ workers: ``pip install 'wsgi-logstream[rq]'``.

The operation is an ordinary module-level function wrapped by
:func:`logstream_job`; the web tier enqueues each new job with
:class:`RQRunner`::

    # tasks.py, imported by the web app and by the worker
    from wsgi_logstream.redis import RedisStore
    from wsgi_logstream.rq import logstream_job

    def make_store():
        return RedisStore("redis://localhost:6379/1")

    @logstream_job(store=make_store)
    def reindex(payload):
        logging.getLogger("reindex").info("reindexing %s", payload["form"].get("index"))

    # the web app
    from redis import Redis
    from rq import Queue
    from wsgi_logstream import jobs
    from wsgi_logstream.rq import RQRunner
    application = jobs(reindex, store=make_store(), runner=RQRunner(Queue(connection=Redis()), reindex))

    # the worker
    $ rq worker --url redis://localhost:6379/0

``POST /`` creates the job ``queued``, enqueues ``reindex(job_id, payload)``
(the RQ job's id is the job's id) and answers ``303``. RQ runs it in a work
horse, a fork of the worker, where :func:`wsgi_logstream.runner.run_job`
marks the job running, runs the function with the job's sink bound and ends
the job. The worker's own log (``rq.worker``) is left as RQ set it up.
``get_current_job()`` and RQ's job timeout (a signal in the work horse) work
as usual; a timeout that interrupts the function ends the job as ``error``.

``store`` is a store or a function that makes one, called in the work horse
(a Redis client must not cross the fork). The RQ job returns the job's final
status, or None if it did not run it (cancelled while queued).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping

from rq import Queue

from .options import Options
from .runner import StoreSource, _job_status_function, _QueueRunner, per_process_store

__all__ = ["RQRunner", "logstream_job"]


def logstream_job(
    *, store: StoreSource, options: Options | Mapping[str, Any] | None = None
) -> Callable[[Callable[..., Any]], Callable[..., str | None]]:
    """Wrap ``func`` so that calling it as ``func(job_id, *args, **kwargs)`` runs it as that job of ``store``.

    The wrapper keeps ``func``'s module and name, so RQ finds it by its
    import path: decorate a module-level function. ``options`` are
    :func:`~wsgi_logstream.runner.run_job`'s.
    """
    get_store = per_process_store(store)

    def decorate(func: Callable[..., Any]) -> Callable[..., str | None]:
        if not callable(func):
            raise TypeError(f"logstream_job decorates a function, got {func!r}")

        return functools.wraps(func)(_job_status_function(get_store, func, options))

    return decorate


class RQRunner(_QueueRunner):
    """Enqueues each job :func:`~wsgi_logstream.jobs` creates on ``queue``, as ``func(job_id, payload)``.

    ``func`` is a function made by :func:`logstream_job` (or its import path
    as a string, for a web tier that does not import the worker's code).
    ``enqueue_options`` go to every ``enqueue_call`` (``timeout``,
    ``result_ttl``, ...). The job's id is the RQ job's id. ``start(store, *args, title=, owner=, timeout=,
    **kwargs)`` creates a job by code and enqueues ``func(job_id, *args, **kwargs)``; it returns the job's id.
    """

    def __init__(self, queue: Queue, func: Callable[..., Any] | str, **enqueue_options: Any) -> None:
        if not isinstance(queue, Queue):
            raise TypeError(f"RQRunner takes an rq.Queue, got {queue!r}")
        if not (callable(func) or isinstance(func, str)):
            raise TypeError(f"RQRunner takes a function or its import path, got {func!r}")
        if {"job_id", "args", "kwargs"} & set(enqueue_options):
            raise TypeError("RQRunner sets job_id, args and kwargs itself (the job's id and payload)")
        self.queue = queue
        self.func: Any = func  # rq's own type for it is a TypeVar over the two kinds
        self.enqueue_options = enqueue_options

    def _send(self, job_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.queue.enqueue_call(self.func, args=(job_id, *args), kwargs=kwargs, job_id=job_id, **self.enqueue_options)
