"""The one way every request is served: parse once, authorise, answer or stream.

A plain stream (:mod:`wsgi_logstream.app`) and a job (:mod:`wsgi_logstream.jobs`)
differ only in where the log comes from: ``logstream()`` makes one per request,
``jobs()`` looks one up in a store. Both hand their work to :func:`respond`,
which turns any :class:`~wsgi_logstream.errors.HttpError` into a short answer,
and serve their streams through :func:`open_stream`, so headers, ``HEAD``, the
first write and the keep-alives are the same everywhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterable

from .assets import ASSET_PREFIX, serve_asset
from .errors import HttpError, Refused, StoreUnavailable, error_response, unavailable
from .filters import FilteredReader, attachment
from .formats import Format
from .guard import cross_site_refusal
from .options import Options
from .request import STREAM_HEADERS, StreamRequest
from .response import StreamResponse
from .store import LogReader

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from .record import JobRecord

__all__ = ["ACTIONS", "authorize", "open_stream", "refuse_cross_site", "respond", "see_other"]

#: What an ``authorize`` hook is asked about.
ACTIONS = ("stream", "start", "view", "cancel", "list")

Handler = Callable[["WSGIEnvironment", "StartResponse"], Iterable[bytes]]


def respond(environ: WSGIEnvironment, start_response: StartResponse, handler: Handler) -> Iterable[bytes]:
    """Run ``handler``; an :class:`HttpError` it raises becomes a short plain-text answer.

    A path below ``_assets/`` is the pages' script or style, answered from the package: it runs nothing.
    """
    path = environ.get("PATH_INFO", "")
    if path.startswith(ASSET_PREFIX):
        return serve_asset(environ, start_response, path[len(ASSET_PREFIX) :])
    try:
        return handler(environ, start_response)
    except HttpError as error:
        return error_response(start_response, error)
    except StoreUnavailable as exc:
        return error_response(start_response, unavailable(f"the job store is unavailable, try again shortly ({exc})"))


def authorize(options: Options, environ: WSGIEnvironment, action: str, record: JobRecord | None = None) -> None:
    """Ask the ``authorize`` hook; a refusal is raised as a 403 (or the hook's own status)."""
    hook = options.authorize
    if hook is None:
        return
    try:
        allowed = hook(environ, action, record)
    except Refused as refusal:
        raise refusal.http_error() from None
    if allowed is not True:
        raise HttpError(403, f"not allowed to {action} here")


def refuse_cross_site(options: Options, environ: WSGIEnvironment) -> None:
    """A browser request from another site may not start, cancel or run anything here: 403."""
    refusal = cross_site_refusal(environ, allowed_origins=options.allowed_origins)
    if refusal is not None:
        raise HttpError(403, refusal)


def open_stream(
    start_response: StartResponse,
    request: StreamRequest,
    fmt: Format,
    reader: Callable[[], LogReader],
    *,
    title: str,
    started: float,
    heartbeat: float,
    on_close: Callable[[], None] | None = None,
    deadline: float | None = None,
    check: Callable[[], object] | None = None,
    recheck: float | None = None,
) -> Iterable[bytes]:
    """Start the response and return the stream (nothing for ``HEAD``; ``reader`` is then never made)."""
    headers = [("Content-Type", fmt.media_type), *STREAM_HEADERS, *fmt.headers]
    if request.download:
        headers.append(("Content-Disposition", attachment(title, fmt)))
    start_response("200 OK", headers)
    if request.head_only:
        return []
    log_reader = reader()
    if request.filter is not None:
        log_reader = FilteredReader(log_reader, request.filter)
    return StreamResponse(
        log_reader,
        fmt,
        title=title,
        started=started,
        heartbeat=heartbeat,
        on_close=on_close,
        deadline=deadline,
        check=check,
        recheck=recheck,
    )


def see_other(start_response: StartResponse, location: str, message: str) -> list[bytes]:
    """``303 See Other`` to ``location``, with a line a person reads."""
    body = f"{message}: {location}\n".encode()
    start_response(
        "303 See Other",
        [("Location", location), ("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]
