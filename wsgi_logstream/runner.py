"""Running a job outside the web process: any Python process, a Celery or an RQ worker.

A job is a record and a log in a store (:mod:`wsgi_logstream.store`), so
whoever can reach the store can run it. :func:`run_job` is that whoever's
half: it takes a job the web tier created (``queued``), marks it running,
calls the function with the job's sink bound (its records, and those of the
threads it starts with :class:`wsgi_logstream.Thread` or
:func:`wsgi_logstream.bind`, go to the job; the process's own logging is left
as it was), and ends it with the same summary a job run in a web thread gets:
``ok``, ``error`` (with the traceback), ``cancelled`` or ``timeout``. A job
cancelled while it was queued never starts.

The web tier's half is a :class:`Runner`, given to
:func:`wsgi_logstream.jobs` as ``runner=``: ``POST /`` then creates the
record, hands the runner the job's id and a JSON-safe *payload* (see
:func:`payload_from_environ`) and answers ``303`` at once; the job shows
``queued`` until a worker takes it. A WSGI environ cannot travel through a
broker, so the payload is all a queued job is told about the request that
started it. :class:`wsgi_logstream.celery.CeleryRunner` and
:class:`wsgi_logstream.rq.RQRunner` are the two this package ships; any
object with a ``submit`` method will do.

The function runs in the calling thread (the worker's own), so what a task
queue keeps per thread (Celery's ``current_task``, RQ's ``get_current_job()``)
and the signals it uses for time limits work as they do without this module.

Liveness is the store's business: a store whose jobs can be run elsewhere
(Redis) renews a lease from the log it hands out, so a worker that dies
mid-job leaves a job that every viewer sees end as ``lost``.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from dataclasses import replace
from typing import Any, Callable, Mapping, Protocol, Union, runtime_checkable
from urllib.parse import parse_qsl

from .channel import Summary
from .operation import Operation
from .options import DEFAULT_QUEUE_TIMEOUT, Options, positive
from .record import JobRecord, due_ending
from .store import JobStore

__all__ = [
    "MAX_PAYLOAD_BODY",
    "RUN_OPTIONS",
    "PayloadError",
    "Runner",
    "StoreSource",
    "new_job",
    "payload_from_environ",
    "per_process_store",
    "run_job",
]

#: A store, or a function that makes one: called once in each worker process that needs it.
StoreSource = Union[JobStore, Callable[[], JobStore]]

#: The options :func:`run_job` takes: how records are chosen, written and reported.
RUN_OPTIONS = ("level", "loggers", "formatter", "redact", "traceback")

#: The largest POST body a queued job's payload carries (it travels through a broker).
MAX_PAYLOAD_BODY = 64 * 1024


class PayloadError(ValueError):
    """A request body a queued job's payload cannot carry; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@runtime_checkable
class Runner(Protocol):
    """Hands a new job to whatever runs it (a task queue); given to :func:`~wsgi_logstream.jobs` as ``runner``.

    ``submit`` is called after the job's record was created ``queued`` and
    must return at once: the request that started the job is waiting for it.
    ``payload`` is plain JSON-safe data (:func:`payload_from_environ`). If it
    raises, the job is ended as ``error`` and the request answered ``503``.
    """

    def submit(self, store: JobStore, record: JobRecord, payload: dict[str, Any]) -> None: ...


class _QueueRunner:
    """What every task queue's runner shares (:class:`~wsgi_logstream.celery.CeleryRunner`,
    :class:`~wsgi_logstream.rq.RQRunner`): a job goes to the queue as ``(job_id, *args)``, ``kwargs``, under the
    job's id as the queue's own id for it. A subclass says how, in :meth:`_send`; the rest is here, so that
    ``submit`` and ``start`` mean the same for every queue.
    """

    def _send(self, job_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Put ``(job_id, *args)``, ``kwargs`` on the queue under the id ``job_id``; return at once."""
        raise NotImplementedError

    def submit(self, store: JobStore, record: JobRecord, payload: dict[str, Any]) -> None:
        self._send(record.id, (payload,), {})

    def start(
        self,
        store: JobStore,
        *args: Any,
        title: str = "Job",
        owner: str | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> str:
        """Create a job in ``store`` and queue it with ``args``/``kwargs`` (the task or function gets
        ``(job_id, *args, **kwargs)``); returns the job's id.

        For jobs started by code (a cron, a management command) rather than
        by a ``POST``: viewers find them in the jobs app like any other.
        """
        job_id = new_job(store, title=title, owner=owner, timeout=timeout)
        self._send(job_id, args, kwargs)
        return job_id


def _job_status_function(
    get_store: Callable[[], JobStore], func: Callable[..., Any], options: Options | Mapping[str, Any] | None
) -> Callable[..., str | None]:
    """``run_as_job(job_id, *args, **kwargs)``: runs ``func`` as that job of ``get_store()`` (:func:`run_job`) and
    returns the job's final status, or None if it did not run it: what a task queue's task does."""

    def run_as_job(job_id: str, *args: Any, **kwargs: Any) -> str | None:
        summary = run_job(get_store(), job_id, func, *args, options=options, **kwargs)
        return None if summary is None else summary.status

    return run_as_job


def new_job(
    store: JobStore,
    *,
    title: str = "Job",
    owner: str | None = None,
    timeout: float | None = None,
    queue_timeout: float | None = DEFAULT_QUEUE_TIMEOUT,
) -> str:
    """Create a ``queued`` job in ``store`` and return its id: a job started by code rather than by a ``POST``.

    ``timeout`` counts from now, queued time included, and ``queue_timeout``
    bounds the wait for a worker to begin it (then it is ``lost``), as for a
    job started through :func:`~wsgi_logstream.jobs`.
    """
    if timeout is not None:  # NaN, infinity and ints too large for a float too: a deadline that never comes
        try:
            timeout = positive("timeout", timeout, integer=False)
        except TypeError:
            raise ValueError(f"timeout must be a number of seconds > 0 or None, got {timeout!r}") from None
    queue_timeout = positive("queue_timeout", queue_timeout, integer=False, allow_none=True)
    now = time.time()
    record = JobRecord(
        id=secrets.token_urlsafe(12),
        title=title,
        created=now,
        owner=owner,
        deadline=None if timeout is None else now + timeout,
        lease_until=None if queue_timeout is None else now + queue_timeout,
    )
    store.create(record)
    return record.id


def payload_from_environ(environ: Mapping[str, Any], record: JobRecord) -> dict[str, Any]:
    """What a queued job is told about the request that started it: plain, JSON-safe data.

    - ``job_id``, ``title``, ``owner``: the job's;
    - ``query``: the query string's fields (the last value of a repeated name);
    - ``form``: an ``application/x-www-form-urlencoded`` body's fields, likewise;
    - ``json``: a JSON body, parsed (absent otherwise).

    ``environ`` is the copy made for the target (its body already read).
    A body of any other type, or one that is not valid, is a
    :class:`PayloadError` (the jobs app answers ``415`` or ``400``): a queued job must not be started
    without what was posted to it.
    """
    body = b""
    stream = environ.get("wsgi.input")
    if stream is not None:
        body = stream.read()
    payload: dict[str, Any] = {
        "job_id": record.id,
        "title": record.title,
        "owner": record.owner,
        "query": dict(parse_qsl(str(environ.get("QUERY_STRING", "")), keep_blank_values=True)),
        "form": {},
    }
    if not body:
        return payload
    if len(body) > MAX_PAYLOAD_BODY:
        raise PayloadError(f"a queued job's request body is limited to {MAX_PAYLOAD_BODY} bytes", 413)
    media = str(environ.get("CONTENT_TYPE", "")).split(";", 1)[0].strip().lower()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadError("a queued job's request body must be UTF-8") from None
    if media == "application/x-www-form-urlencoded":
        payload["form"] = dict(parse_qsl(text, keep_blank_values=True))
    elif media == "application/json":
        try:
            payload["json"] = json.loads(text)
        except ValueError:
            raise PayloadError("the request body is not valid JSON") from None
    else:
        raise PayloadError(
            "a queued job takes a form (application/x-www-form-urlencoded) or JSON (application/json) body,"
            f" not {media or 'a body without Content-Type'}",
            415,
        )
    return payload


def per_process_store(source: StoreSource) -> Callable[[], JobStore]:
    """A function giving ``source``'s store, made once per process if ``source`` is a function.

    Task queues fork their workers (Celery's prefork pool, RQ's work horse):
    a store holding connections or threads must not cross a ``fork``, so a
    worker's tasks take a function that makes the store, called in the
    process that runs the task, the first time it is needed.
    """
    if isinstance(source, JobStore):
        return lambda: source
    if not callable(source):
        raise TypeError(f"store must be a JobStore or a function returning one, got {source!r}")
    made: dict[int, JobStore] = {}
    lock = threading.Lock()

    def get() -> JobStore:
        pid = os.getpid()
        with lock:
            store = made.get(pid)
            if store is None:
                store = source()
                if not isinstance(store, JobStore):
                    raise TypeError(f"the store function {source!r} returned {store!r}, not a JobStore")
                made.clear()  # a store of the parent process is not ours to use
                made[pid] = store
            return store

    return get


def _run_options(options: Options | Mapping[str, Any] | None) -> Options:
    if options is None:
        return Options()
    if isinstance(options, Options):
        return options
    if not isinstance(options, Mapping):
        raise TypeError(f"options must be a mapping of {', '.join(RUN_OPTIONS)}, got {options!r}")
    unknown = set(options) - set(RUN_OPTIONS)
    if unknown:
        raise TypeError(
            f"option(s) {', '.join(sorted(unknown))} do not apply to run_job (it takes {', '.join(RUN_OPTIONS)})"
        )
    return Options.from_kwargs(**options)


def run_job(
    store: JobStore,
    job_id: str,
    target: Callable[..., Any],
    /,
    *args: Any,
    options: Options | Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Summary | None:
    """Run ``target(*args, **kwargs)`` in this thread as the job ``job_id`` of ``store``.

    The job must exist and be ``queued`` (created by the jobs app for a
    runner, or by :func:`new_job`). Returns how this run ended, or None if the
    job did not run: it was cancelled while queued, another worker took it
    (a task delivered twice), or it had already ended (timed out in the queue).
    What the target raises is part of the summary, not raised again: the
    task queue sees a task that returned.

    ``options`` (a mapping): ``level``, ``loggers``, ``formatter``, ``redact``
    and ``traceback``, as :func:`~wsgi_logstream.logstream` takes them. The
    job's ``timeout`` is its record's deadline, counted from when it was
    created: ``cancelled()`` turns true then, and the job ends as ``timeout``.
    ``KeyError`` if the store does not know the job.
    """
    if not callable(target):
        raise TypeError(f"target must be callable, got {target!r}")
    parsed = _run_options(options)
    record = store.get(job_id)
    if record is None:
        raise KeyError(job_id)
    overdue = due_ending(record, time.time())
    if overdue is not None:
        store.finish(job_id, overdue)  # timed out in the queue: it never starts
        return None
    if record.deadline is not None:
        parsed = replace(parsed, timeout=max(record.deadline - record.created, 1e-9))
    log = store.open_log(job_id)
    try:
        if not log.begin(time.time()):
            overdue = due_ending(store.get(job_id) or record, time.time())
            if overdue is not None:
                store.finish(job_id, overdue)  # refused as past its lease: it is lost, say so now
            return None
        ended: list[Summary] = []

        def finish(summary: Summary) -> bool:
            ended.append(summary)
            return log.finish(summary)

        operation = Operation(
            lambda _environ: target(*args, **kwargs),
            {},
            parsed,
            log,
            finish=finish,
            cancel_event=log.cancel_event,
            name=f"job-{job_id}",
        )
        if record.deadline is not None:
            # The deadline counts from the job's creation, time in the queue included.
            operation.sink.deadline = time.monotonic() + (record.deadline - time.time())
        # In this thread, not the operation's own: a task queue's per-thread state
        # and its time-limit signals reach the target as they would without us.
        operation._run()
        return ended[-1] if ended else None
    finally:
        log.close()
