"""``jobs(target, **options)``: operations people can leave and come back to.

A plain stream ties an operation to one request: close the tab and the log is
gone, refresh and the operation runs again. A job is started once, by a
``POST``, and then has a URL of its own that any number of people can watch,
leave and come back to::

    POST /              start a job            -> 303 See Other: /<id>
    GET  /              running and recent jobs (HTML, or JSON for Accept: application/json)
    GET  /<id>          its log in any format: history, then live lines, then the summary
    GET  /<id>?since=N  resume after line N (SSE also reads Last-Event-ID)
    POST /<id>/cancel   ask it to stop (cooperatively: ``cancelled()`` turns true)

Each viewer reads the job's bounded history through its own cursor, so a slow
viewer only ever falls behind itself (it is told how many lines it missed)
and never slows the job or anyone else. The job runs on when every viewer is
gone. Ids come from :mod:`secrets`, so nobody finds another's job by counting.
"""

from __future__ import annotations

import html
import json
import re
import secrets
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable

from .assets import ASSET_PREFIX, asset_prefix, asset_url, serve_asset
from .channel import Channel
from .formats import HtmlFormat, SseFormat, summary_object
from .operation import Operation, target_caller
from .options import Options
from .probe import probe_app
from .request import (
    STREAM_HEADERS,
    BadRequest,
    allow,
    choose_format,
    environ_for_target,
    error_response,
    make_format,
    query_params,
    reject_body,
)
from .response import StreamResponse
from .store import JobStore, MemoryStore
from .viewer import CSP

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["Job", "JobsApp", "jobs"]

_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")


class Job:
    """One run of the target, with its log and its place in the store."""

    def __init__(self, job_id: str, operation: Operation, title: str) -> None:
        self.id = job_id
        self.title = title
        self.operation = operation
        self.channel: Channel = operation.channel
        self.created = operation.started

    @property
    def url_path(self) -> str:
        """The job's path below the jobs app's mount point."""
        return f"/{self.id}"

    @property
    def ended(self) -> float | None:
        summary = self.channel.summary
        return None if summary is None else summary.ended

    @property
    def finished(self) -> bool:
        return self.channel.summary is not None

    @property
    def status(self) -> str:
        summary = self.channel.summary
        return "running" if summary is None else summary.status

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the target has returned; True if it did within ``timeout``."""
        return self.operation.done.wait(timeout)

    def cancel(self) -> None:
        self.operation.cancel()

    def check_timeout(self) -> None:
        self.operation.expire()

    def to_json(self) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "id": self.id,
            "title": self.title,
            "status": self.status,
            "created": self.created,
            "records": self.channel.records,
            "first_seq": self.channel.first_seq,
            "next_seq": self.channel.next_seq,
        }
        progress = self.channel.last_progress
        if progress is not None:
            obj["progress"] = {"done": progress.done, "total": progress.total, "message": progress.message or None}
        summary = self.channel.summary
        if summary is not None:
            obj["summary"] = summary_object(summary, 0, self.channel.next_seq)
            del obj["summary"]["dropped"]
        return obj


class JobsApp:
    """The WSGI application :func:`jobs` returns."""

    def __init__(
        self,
        target: Callable[..., Any],
        options: Options,
        *,
        max_history: int,
        allow_start: bool,
        store: JobStore,
    ) -> None:
        self.target = target
        self.options = options
        self.max_history = max_history
        self.allow_start = allow_start
        self.store = store
        self._call = target_caller(target)
        self._slots = threading.BoundedSemaphore(options.max_concurrent) if options.max_concurrent else None
        self._running: set[Job] = set()
        self._lock = threading.Lock()

    # -- starting and stopping ---------------------------------------------------

    def start(self, environ: dict[str, Any] | None = None) -> Job:
        """Start a job now; its target gets ``environ`` (or ``{}``)."""
        if self._slots is not None and not self._slots.acquire(blocking=False):
            raise RuntimeError(f"too many jobs running (max_concurrent={self.options.max_concurrent})")
        job_id = secrets.token_urlsafe(12)
        channel = Channel(self.max_history, retain=True)
        operation = Operation(
            self._call, dict(environ or {}), self.options, channel, on_finish=self._finished, name=f"job-{job_id}"
        )
        job = Job(job_id, operation, self.options.title)
        with self._lock:
            self._running.add(job)
        self.store.add(job)
        operation.start()
        return job

    def _finished(self, operation: Operation) -> None:
        with self._lock:
            self._running = {job for job in self._running if job.operation is not operation}
        if self._slots is not None:
            self._slots.release()

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Cancel running jobs and wait up to ``timeout`` for them; True if all ended."""
        with self._lock:
            running = list(self._running)
        for job in running:
            job.cancel()
        deadline = time.monotonic() + timeout
        return all(job.wait(max(deadline - time.monotonic(), 0)) for job in running)

    # -- WSGI --------------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "").startswith(ASSET_PREFIX):  # the pages' script and style; runs nothing
            return serve_asset(environ, start_response, environ["PATH_INFO"][len(ASSET_PREFIX) :])
        try:
            path = environ.get("PATH_INFO", "") or "/"
            if path == "/":
                return self._index(environ, start_response)
            parts = path.strip("/").split("/")
            if not _ID.fullmatch(parts[0]) or len(parts) > 2 or (len(parts) == 2 and parts[1] != "cancel"):
                raise BadRequest("404 Not Found", "no such job")
            job = self.store.get(parts[0])
            if job is None:
                raise BadRequest("404 Not Found", "no such job (it may have finished long ago and been forgotten)")
            if len(parts) == 2:
                return self._cancel(job, environ, start_response)
            return self._stream(job, environ, start_response)
        except BadRequest as error:
            return error_response(start_response, error)

    def _base(self, environ: WSGIEnvironment) -> str:
        return str(environ.get("SCRIPT_NAME", "")).rstrip("/")

    def _index(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        allow(("GET", "HEAD", "POST") if self.allow_start else ("GET", "HEAD"), environ)
        if environ["REQUEST_METHOD"] == "POST":
            try:
                job = self.start(environ_for_target(environ))
            except RuntimeError as exc:
                raise BadRequest("503 Service Unavailable", str(exc), [("Retry-After", "5")]) from None
            location = f"{self._base(environ)}/{job.id}"
            body = f"started: {location}\n".encode()
            start_response(
                "303 See Other",
                [
                    ("Location", location),
                    ("Content-Type", "text/plain; charset=utf-8"),
                    ("Content-Length", str(len(body))),
                ],
            )
            return [body]
        query_params(environ)
        wants_json = "application/json" in environ.get("HTTP_ACCEPT", "") or "format=json" in environ.get(
            "QUERY_STRING", ""
        )
        listed = self.store.jobs()
        if wants_json:
            body = json.dumps({"jobs": [job.to_json() for job in listed]}).encode()
            content_type = "application/json"
        else:
            body = self._index_html(environ, listed).encode()
            content_type = "text/html; charset=utf-8"
        start_response(
            "200 OK",
            [
                ("Content-Type", content_type),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-cache"),
                ("Vary", "Accept"),
                ("X-Content-Type-Options", "nosniff"),
                *([] if wants_json else [("Content-Security-Policy", CSP)]),
            ],
        )
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [body]

    def _index_html(self, environ: WSGIEnvironment, listed: list[Job]) -> str:
        base = html.escape(self._base(environ))
        rows = []
        for job in listed:
            progress = job.channel.last_progress
            bar = ""
            if progress is not None and progress.total:
                bar = f'<progress value="{progress.done:g}" max="{progress.total:g}"></progress>'
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job.created))
            rows.append(
                f'<tr class="{html.escape(job.status)}"><td><a href="{base}/{job.id}">{job.id}</a></td>'
                f"<td>{html.escape(job.status)}</td><td>{bar}</td><td>{job.channel.records}</td><td>{when}</td></tr>"
            )
        table = (
            "<table><thead><tr><th>job</th><th>status</th><th>progress</th><th>lines</th><th>started</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>"
            if rows
            else "<p>No jobs yet.</p>"
        )
        form = (
            f'<form method="post" action="{base}/"><button type="submit">Start a new run</button></form>'
            if self.allow_start
            else ""
        )
        title = html.escape(self.options.title)
        return (
            f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}: jobs</title>'
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            f'<link rel="stylesheet" href="{html.escape(asset_url(environ, "index.css"))}">'
            f"</head><body><h1>{title}</h1>{form}{table}</body></html>"
        )

    def _cancel(self, job: Job, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        allow(("POST",), environ)
        job.cancel()
        if "application/json" in environ.get("HTTP_ACCEPT", ""):
            body = json.dumps({"id": job.id, "status": job.status, "cancel_requested": True}).encode()
            start_response("202 Accepted", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        location = f"{self._base(environ)}/{job.id}"
        body = b"cancel requested\n"
        start_response(
            "303 See Other",
            [("Location", location), ("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
        )
        return [body]

    def _stream(self, job: Job, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        allow(("GET", "HEAD"), environ)
        params = query_params(environ)
        if params.get("probe") == "1":
            return probe_app(environ, start_response)  # timed lines for `wsgi-logstream check`; runs nothing
        name = choose_format(environ, params)
        reject_body(environ)
        channel = job.channel
        last_event_id = environ.get("HTTP_LAST_EVENT_ID") if name == "sse" else None
        # EventSource reconnects to its original URL, ?since= included, and adds
        # Last-Event-ID: the header is the newer news.
        # A running job's last line is next_seq - 1; a finished one's end event has id next_seq.
        newest = channel.next_seq if job.finished else channel.next_seq - 1
        since = _since(last_event_id if last_event_id is not None else params.get("since"), newest)
        if last_event_id is not None and job.finished and since >= channel.next_seq:
            # The client saw the end event and EventSource reconnected: 204 stops it.
            start_response("204 No Content", [("Cache-Control", "no-cache")])
            return []
        if name == "sse":
            fmt: Any = SseFormat(detail=params.get("detail") in ("1", "json", "true"), last_id=since)
        elif name == "html":
            fmt = HtmlFormat(resumable=True, assets=asset_prefix(environ))
        else:
            fmt = make_format(name, params, ansi=self.options.ansi)
        start_response("200 OK", [("Content-Type", fmt.media_type), *STREAM_HEADERS, *fmt.headers])
        if environ["REQUEST_METHOD"] == "HEAD":
            return []
        return StreamResponse(
            channel.reader(since),
            fmt,
            title=job.title,
            heartbeat=self.options.heartbeat,
            deadline=job.operation.sink.deadline,
            on_deadline=job.check_timeout,
        )


def _since(value: str | None, newest: int) -> int:
    """The last sequence number a client already has (0: none); at most ``newest``."""
    if value is None or value == "":
        return 0
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise BadRequest("400 Bad Request", "since (or Last-Event-ID) must be a whole number >= 0")
    since = int(value)
    if since > newest:
        raise BadRequest("400 Bad Request", f"since={since} is beyond the newest event of this job ({newest})")
    return since


def jobs(
    target: Callable[..., Any],
    *,
    max_history: int = 10_000,
    keep_finished: float = 3600.0,
    max_finished: int = 100,
    allow_start: bool = True,
    store: JobStore | None = None,
    **options: Any,
) -> JobsApp:
    """Return a WSGI application that runs ``target`` as jobs people can come back to.

    Takes every option of :func:`wsgi_logstream.logstream` (``max_concurrent``
    limits running jobs; ``on_disconnect`` does not apply: a job outlives its
    viewers) and:

    - ``max_history`` (10000): lines each job keeps for viewers who come later.
    - ``keep_finished`` (3600): seconds a finished job stays listed and viewable.
    - ``max_finished`` (100): finished jobs kept at most; the oldest go first.
    - ``allow_start`` (True): whether ``POST /`` starts a job; without it jobs
      are started only by :meth:`JobsApp.start`.
    - ``store``: a :class:`~wsgi_logstream.store.JobStore` (default: in memory).
    """
    parsed = Options.from_kwargs(**options)
    if isinstance(max_history, bool) or not isinstance(max_history, int) or max_history < 1:
        raise ValueError(f"max_history must be an int >= 1, got {max_history!r}")
    if isinstance(keep_finished, bool) or not isinstance(keep_finished, (int, float)) or not keep_finished >= 0:
        raise ValueError(f"keep_finished must be a number of seconds >= 0, got {keep_finished!r}")
    if isinstance(max_finished, bool) or not isinstance(max_finished, int) or max_finished < 0:
        raise ValueError(f"max_finished must be an int >= 0, got {max_finished!r}")
    if not isinstance(allow_start, bool):
        raise TypeError(f"allow_start must be True or False, got {allow_start!r}")
    if store is None:
        store = MemoryStore(keep_finished=float(keep_finished), max_finished=max_finished)
    elif not isinstance(store, JobStore):
        raise TypeError(f"store must be a JobStore, got {store!r}")
    return JobsApp(target, parsed, max_history=max_history, allow_start=allow_start, store=store)
