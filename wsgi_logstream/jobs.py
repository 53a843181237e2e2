"""``jobs(target, **options)``: operations people can leave and come back to.

A plain stream ties an operation to one request: close the tab and the log is
gone, refresh and the operation runs again. A job is started once, by a
``POST``, and then has a URL of its own that any number of people can watch,
leave and come back to::

    POST /              start a job            -> 303 See Other: /<id>
    GET  /              queued, running and recent jobs (HTML, or JSON for Accept: application/json)
    GET  /<id>          its log in any format: history, then live lines, then the summary
    GET  /<id>?since=N  resume after line N (SSE also reads Last-Event-ID)
    GET  /<id>/log.txt  the whole log as a file (also log.ndjson, or ?download=1 in any format)
    POST /<id>/cancel   ask it to stop (cooperatively: ``cancelled()`` turns true)

A job is a plain record and a log in a store (:mod:`wsgi_logstream.store`);
this module only serves them, through the same pipeline as a plain stream,
and runs the jobs it starts in a thread of this process. Each viewer reads
the job's log through its own cursor, so a slow viewer only ever falls behind
itself (it is told how many lines it missed) and never slows the job or anyone
else. The job runs on when every viewer is gone. Ids come from :mod:`secrets`,
so nobody finds another's job by counting.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from .assets import asset_url
from .channel import Summary
from .download import DOWNLOAD_PATHS, serve_download
from .errors import HttpError, Refused, unavailable
from .handle import JobHandle
from .hosting import threads_disabled_reason
from .joblist import cancel_form, job_json, jobs_page
from .journal import JournalOptions
from .operation import Operation, target_caller
from .options import (
    DEFAULT_QUEUE_TIMEOUT,
    JOBS_OPTIONS,
    STORE_OPTIONS,
    FormFields,
    JobsSettings,
    Options,
    Owner,
    StreamOptions,
    default_owner,
)
from .pipeline import authorize, open_stream, refuse_cross_site, respond, see_other
from .probe import probe_app
from .record import JobRecord, due_ending
from .request import allow, choose_media, environ_for_target, is_probe, parse_stream_request, query_params
from .runner import PayloadError, Runner, payload_from_environ
from .store import JobStore, MemoryStore
from .viewer import CSP

if TYPE_CHECKING:
    from typing import Unpack

    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["JobHandle", "JobsApp", "JobsOptions", "jobs"]

_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
_BELOW = ("cancel", *DOWNLOAD_PATHS)  # what a path may name below a job
_LIST_MEDIA = {"application/json": "json", "text/html": "html", "application/xhtml+xml": "html"}
#: How often a viewer of a job whose runner holds a lease looks at the record again.
LEASE_RECHECK = 1.0


class JobsOptions(StreamOptions, JournalOptions, total=False):
    """:class:`StreamOptions` and the options only :func:`~wsgi_logstream.jobs` takes."""

    max_history: int
    keep_finished: float
    max_finished: int
    allow_start: bool
    store: JobStore | None
    owner: Owner | None
    form_fields: FormFields | None
    runner: Runner | None
    queue_timeout: float | None


class JobsApp:
    """The WSGI application :func:`jobs` returns."""

    def __init__(
        self,
        target: Callable[..., Any],
        options: Options,
        settings: JobsSettings,
        store: JobStore,
        runner: Runner | None = None,
    ) -> None:
        self.target = target
        self.options = options
        self.settings = settings
        self.store = store
        #: Who runs the jobs: None, a thread of this process; else a task queue (:mod:`wsgi_logstream.runner`).
        self.runner = runner
        self._call = target_caller(target)
        self._slots = threading.BoundedSemaphore(options.max_concurrent) if options.max_concurrent else None
        self._running: dict[str, JobHandle] = {}
        self._lock = threading.Lock()

    @property
    def allow_start(self) -> bool:
        return self.settings.allow_start

    # -- jobs, for code and for the WSGI layer -----------------------------------

    def start(self, environ: Mapping[str, Any] | None = None, *, owner: str | None = None) -> JobHandle:
        """Start a job now, in a thread of this process; its target gets ``environ`` (or ``{}``).

        With a ``runner``, the job is created ``queued`` and handed to it
        instead, with :func:`~wsgi_logstream.runner.payload_from_environ`'s
        payload (:class:`~wsgi_logstream.runner.PayloadError` for a body it cannot carry).
        """
        if self.runner is not None:
            return self._submit(self.runner, environ or {}, owner)
        if self._slots is not None and not self._slots.acquire(blocking=False):
            raise RuntimeError(f"too many jobs running (max_concurrent={self.options.max_concurrent})")
        try:
            job_id = secrets.token_urlsafe(12)
            now = time.time()
            timeout = self.options.timeout
            record = JobRecord(
                id=job_id,
                title=self.options.title,
                created=now,
                owner=owner,
                deadline=now + timeout if timeout else None,
            )
            self.store.create(record)
            log = self.store.open_log(job_id)
            log.begin(now)
        except BaseException:
            if self._slots is not None:
                self._slots.release()
            raise
        operation = Operation(
            self._call,
            dict(environ or {}),
            self.options,
            log,
            finish=log.finish,
            cancel_event=log.cancel_event,
            on_finish=lambda _operation: self._finished(job_id),
            on_done=log.close,
            name=f"job-{job_id}",
        )
        handle = JobHandle(self, job_id, operation)
        with self._lock:
            self._running[job_id] = handle
        operation.start()
        return handle

    def _submit(self, runner: Runner, environ: Mapping[str, Any], owner: str | None) -> JobHandle:
        """Create the job ``queued`` and hand it to ``runner``; a job it refused ends as ``error``."""
        now = time.time()
        timeout = self.options.timeout
        queue_timeout = self.settings.queue_timeout
        record = JobRecord(
            id=secrets.token_urlsafe(12),
            title=self.options.title,
            created=now,
            owner=owner,
            deadline=now + timeout if timeout else None,
            lease_until=now + queue_timeout if queue_timeout else None,
        )
        payload = payload_from_environ(environ, record)
        self.store.create(record)
        try:
            runner.submit(self.store, record, payload)
        except Exception as exc:
            ended = time.time()
            self.store.finish(record.id, Summary("error", ended, ended, 0, error=f"could not be queued: {exc}"))
            raise RuntimeError(f"the job could not be queued: {exc}") from exc
        return JobHandle(self, record.id, None)

    def _finished(self, job_id: str) -> None:
        with self._lock:
            self._running.pop(job_id, None)
        if self._slots is not None:
            self._slots.release()

    def lookup(self, job_id: str) -> JobRecord | None:
        """The job's record, settled: a job past its deadline or its lease ends here, whoever looks."""
        # The time before the read: a worker that begins the job after the read began it after this time, so
        # if this time is past the job's lease, so was that begin, and the store refused it.
        now = time.time()
        record = self.store.get(job_id)
        if record is None:
            return None
        ending = due_ending(record, now)
        if ending is None:
            return record
        self.store.finish(job_id, ending)
        return self.store.get(job_id)

    def records(self) -> list[JobRecord]:
        """Every job the store holds, newest first, each settled as :meth:`lookup` does."""
        now = time.time()
        listed = self.store.list()
        if any(due_ending(record, now) for record in listed):
            for record in listed:
                ending = due_ending(record, now)
                if ending is not None:
                    self.store.finish(record.id, ending)
            listed = self.store.list()
        return listed

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Cancel the jobs this process runs and wait up to ``timeout`` for them; True if all ended."""
        with self._lock:
            running = list(self._running.values())
        for handle in running:
            handle.cancel()
        deadline = time.monotonic() + timeout
        return all(handle.wait(max(deadline - time.monotonic(), 0)) for handle in running)

    # -- WSGI --------------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        return respond(environ, start_response, self._serve)

    def _serve(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "") or "/"
        if path == "/":
            return self._index(environ, start_response)
        parts = path.strip("/").split("/")
        if not _ID.fullmatch(parts[0]) or len(parts) > 2 or (len(parts) == 2 and parts[1] not in _BELOW):
            raise HttpError(404, "no such job")
        record = self.lookup(parts[0])
        if record is None:
            raise HttpError(404, "no such job (it may have finished long ago and been forgotten)")
        if len(parts) == 2 and parts[1] == "cancel":
            return self._cancel(record, environ, start_response)
        if len(parts) == 2:  # the whole log as a file (wsgi_logstream.download)
            authorize(self.options, environ, "view", record)
            return serve_download(environ, start_response, record, self.store, self.options, DOWNLOAD_PATHS[parts[1]])
        return self._stream(record, environ, start_response)

    def _base(self, environ: WSGIEnvironment) -> str:
        return str(environ.get("SCRIPT_NAME", "")).rstrip("/")

    def _index(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        allow(("GET", "HEAD", "POST") if self.allow_start else ("GET", "HEAD"), environ)
        if environ["REQUEST_METHOD"] == "POST":
            return self._start(environ, start_response)
        params = query_params(environ)
        authorize(self.options, environ, "list")
        as_json = params.get("format") == "json" or choose_media(environ, _LIST_MEDIA, "html") == "json"
        listed = [record for record in self.records() if self._may_view(environ, record)]
        if as_json:
            body = json.dumps({"jobs": [job_json(record) for record in listed]}).encode()
            content_type = "application/json"
        else:
            fields = self.settings.form_fields(environ) if self.settings.form_fields is not None else {}
            page = jobs_page(
                listed,
                title=self.options.title,
                base=self._base(environ),
                allow_start=self.allow_start,
                form_fields=fields,
                stylesheet=asset_url(environ, "index.css"),
            )
            body = page.encode("utf-8", "backslashreplace")
            content_type = "text/html; charset=utf-8"
        start_response(
            "200 OK",
            [
                ("Content-Type", content_type),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
                ("Vary", "Accept"),
                ("X-Content-Type-Options", "nosniff"),
                ("X-Frame-Options", "SAMEORIGIN"),
                *([] if as_json else [("Content-Security-Policy", CSP)]),
            ],
        )
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [body]

    def _may(self, environ: WSGIEnvironment, action: str, record: JobRecord) -> bool:
        hook = self.options.authorize
        if hook is None:
            return True
        try:
            return hook(environ, action, record) is True
        except Refused:
            return False

    def _may_view(self, environ: WSGIEnvironment, record: JobRecord) -> bool:
        return self._may(environ, "view", record)

    def _cancel_form(self, environ: WSGIEnvironment, record: JobRecord) -> str:
        """A running job's cancel button, for those the hook lets cancel it, with the host's hidden fields (CSRF)."""
        if record.finished or not self._may(environ, "cancel", record):
            return ""
        fields = self.settings.form_fields(environ) if self.settings.form_fields is not None else {}
        # Relative to the job's page (<mount>/<id>), so it works behind a proxy that maps a prefix.
        return cancel_form(f"{record.id}/cancel", fields)

    def _start(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        authorize(self.options, environ, "start")
        refuse_cross_site(self.options, environ)
        reason = threads_disabled_reason(environ)  # uWSGI without threads would freeze the job after the 303
        if reason is not None:
            raise HttpError(503, reason)  # no Retry-After: retrying cannot help until the server's setup changes
        target_environ = environ_for_target(environ)
        owner = self.settings.owner(environ) if self.settings.owner is not None else None
        try:
            handle = self.start(target_environ, owner=owner)
        except PayloadError as exc:  # a body a queued job's payload cannot carry
            raise HttpError(exc.status, str(exc)) from None
        except RuntimeError as exc:
            raise unavailable(str(exc)) from None
        return see_other(start_response, f"{self._base(environ)}/{handle.id}", f"started: {handle.id}")

    def _cancel(self, record: JobRecord, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        allow(("POST",), environ)
        authorize(self.options, environ, "cancel", record)
        refuse_cross_site(self.options, environ)
        self.store.request_cancel(record.id)
        if choose_media(environ, _LIST_MEDIA, "html") == "json":
            current = self.lookup(record.id) or record
            body = json.dumps({"id": record.id, "status": current.status, "cancel_requested": True}).encode()
            start_response("202 Accepted", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        return see_other(start_response, f"{self._base(environ)}/{record.id}", "cancel requested")

    def _stream(self, record: JobRecord, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if is_probe(query_params(environ)):
            authorize(self.options, environ, "view", record)  # a refused client gets no answer but the refusal
            return probe_app(environ, start_response)  # timed lines for `wsgi-logstream check`; runs nothing
        request = parse_stream_request(environ, ("GET", "HEAD"))
        authorize(self.options, environ, "view", record)
        if request.download:
            return serve_download(environ, start_response, record, self.store, self.options, None)
        # A running job's last line is next_seq - 1; a finished one's end event has id next_seq.
        newest = record.next_seq if record.finished else record.next_seq - 1
        since = request.resume_point(newest)
        if request.last_event_id is not None and record.finished and since >= record.next_seq:
            # The client saw the end event and EventSource reconnected: 204 stops it.
            start_response("204 No Content", [("Cache-Control", "no-store")])
            return []
        actions = self._cancel_form(environ, record) if request.format == "html" else ""
        fmt = request.make_format(ansi=self.options.ansi, resumable=True, since=since, actions=actions)
        deadline = None
        if record.deadline is not None and not record.finished:
            deadline = time.monotonic() + (record.deadline - time.time())
        return open_stream(
            start_response,
            request,
            fmt,
            lambda: self.store.reader(record.id, since),
            title=record.title,
            started=record.started if record.started is not None else record.created,
            heartbeat=self.options.heartbeat,
            deadline=deadline,
            check=lambda: self.lookup(record.id),
            # A queued job may be taken by a worker elsewhere, whose lease then says whether it lives.
            recheck=LEASE_RECHECK if record.lease_until is not None or record.status == "queued" else None,
        )


def jobs(target: Callable[..., Any], **options: Unpack[JobsOptions]) -> JobsApp:
    """Return a WSGI application that runs ``target`` as jobs people can come back to.

    Takes every option of :func:`wsgi_logstream.logstream` (``max_concurrent``
    limits jobs running in this process; ``on_disconnect`` does not apply: a
    job outlives its viewers; ``authorize`` is asked with the actions
    ``"start"``, ``"list"``, ``"view"`` and ``"cancel"`` and the job concerned,
    and the list shows each person only the jobs it lets them view) and:

    - ``max_history`` (10000): lines each job keeps for viewers who come later.
    - ``keep_finished`` (3600): seconds a finished job stays listed and viewable.
    - ``max_finished`` (100): finished jobs kept at most; the oldest go first.
    - ``journal_dir``, ``journal_max_bytes``, ``journal_total_bytes``: see :class:`~wsgi_logstream.store.MemoryStore`.
    - ``allow_start`` (True): whether ``POST /`` starts a job; without it jobs
      are started only by :meth:`JobsApp.start`.
    - ``store``: a :class:`~wsgi_logstream.store.JobStore` (default: a
      :class:`~wsgi_logstream.store.MemoryStore` made with the options
      above, which are then the store's to take, not this function's).
    - ``owner`` (``REMOTE_USER``): ``owner(environ)`` names who starts a job.
    - ``form_fields`` (none): ``form_fields(environ)`` gives hidden fields
      for the forms the pages render (a CSRF token).
    - ``runner`` (none: a thread of this process runs each job): a
      :class:`~wsgi_logstream.runner.Runner` that hands each new job to a task
      queue (:class:`~wsgi_logstream.celery.CeleryRunner`,
      :class:`~wsgi_logstream.rq.RQRunner`). ``target`` is then not called
      here, and ``max_concurrent`` is refused (the queue's workers limit it).
    - ``queue_timeout`` (3600; with ``runner`` only): seconds a queued job may
      wait for a worker to begin it. Past them it ends as ``lost`` (the broker
      lost it, or no worker runs) and never starts; None waits until its
      ``timeout``, if it has one.
    """
    unknown = set(options) - set(JobsOptions.__annotations__) - set(Options.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
    given: dict[str, Any] = dict(options)
    stream = {key: value for key, value in given.items() if key not in (*STORE_OPTIONS, *JOBS_OPTIONS, "runner")}
    parsed = Options.from_kwargs(**stream)
    settings = JobsSettings.from_kwargs(
        allow_start=given.get("allow_start", True),
        owner=given.get("owner", default_owner),
        form_fields=given.get("form_fields"),
        queue_timeout=given.get("queue_timeout", DEFAULT_QUEUE_TIMEOUT),
    )
    store_options = {key: given[key] for key in STORE_OPTIONS if key in given}
    store = given.get("store")
    if store is None:
        store = MemoryStore(**store_options)
    elif not isinstance(store, JobStore):
        raise TypeError(f"store must be a JobStore (see wsgi_logstream.store), got {store!r}")
    elif store_options:
        names = ", ".join(sorted(store_options))
        raise TypeError(f"{names}: options of the store; with store= given, pass them to the store instead")
    runner = given.get("runner")
    if runner is not None and parsed.max_concurrent is not None:
        raise TypeError("max_concurrent limits jobs run in this process; with runner=, the queue's workers limit them")
    if runner is None and "queue_timeout" in given:
        raise TypeError("queue_timeout bounds how long a runner's job waits in its queue; it needs runner=")
    if runner is not None and not isinstance(runner, Runner):
        raise TypeError(
            f"runner must have a submit(store, record, payload) method (see wsgi_logstream.runner), got {runner!r}"
        )
    return JobsApp(target, parsed, settings, store, runner)
