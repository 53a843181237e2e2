"""Streams and jobs as ordinary Django URL patterns, behind Django's login, permissions and CSRF.

``LogStreamMiddleware`` around ``get_wsgi_application()`` serves a stream
before Django sees the request: fast, but none of Django's middleware runs
for it. Mounted here instead, a stream or a jobs app is a Django view, so the
request goes through the whole stack (sessions, authentication, CSRF on the
``POST``s, ``ALLOWED_HOSTS``) and the view's decorators::

    from django.contrib.auth.decorators import login_required, permission_required
    from django.urls import include, path
    from wsgi_logstream import jobs, logstream
    from wsgi_logstream import django as logstream_django

    def owner_or_staff(request, action, job):
        # start and list: anyone logged in; view and cancel: the job's owner, or staff
        return job is None or request.user.is_staff or job.owner == request.user.get_username()

    reindexes = jobs(reindex, title="Reindex", **logstream_django.jobs_options(authorize=owner_or_staff))
    rebuild = logstream(rebuild_cache, authorize=logstream_django.hook(lambda request, action, job: True))

    urlpatterns = [
        path("ops/reindex/", include(logstream_django.urls(reindexes, decorators=[login_required]))),
        path("ops/rebuild/", include(logstream_django.urls(rebuild, decorators=[
            login_required, permission_required("shop.rebuild_cache", raise_exception=True)]))),
    ]

What the view does:

- It calls the app with an environ built from ``request.META``: ``SCRIPT_NAME``
  is where the pattern matched (``/ops/reindex``), ``PATH_INFO`` the rest
  (``/<job id>``), the body is the one Django read (its CSRF check reads the
  form; of a multipart form, only the fields), and ``environ["wsgi_logstream.django.request"]`` is the request, for
  the hooks below.
- A stream becomes a :class:`~django.http.StreamingHttpResponse` over the
  app's own iterable: nothing is buffered, each chunk leaves when the server
  pulls it, and Django's ``close()`` of the response closes the stream (which
  ends a plain stream's reader). An answer the app gives whole (errors with
  their status, ``Allow`` and ``Retry-After``; the jobs list; ``303``) is an
  ordinary :class:`~django.http.HttpResponse`.
- ``GZipMiddleware`` compresses a streaming response with a gzip writer that
  is never flushed (``django.utils.text.compress_sequence``): the first lines
  would wait in its buffer for kilobytes more. It leaves alone a response
  that already has a ``Content-Encoding``, so every stream served here
  carries an empty one (``Content-Encoding:``, an empty list of codings, which
  clients read as none). ``ConditionalGetMiddleware`` needs no care: it adds
  no ``ETag`` to a streaming response nor to one marked ``no-store``, and
  every stream and jobs page is.
- The host's logging is untouched; nothing here configures or patches Django.

The hooks, Django-flavoured:

- :func:`hook` turns ``authorize(request, action, job)`` into the core's
  ``authorize(environ, action, job)``. A request that did not come through
  these views has no Django request and is refused.
- :func:`owner` names who started a job: ``request.user.get_username()``.
- :func:`csrf_fields` puts Django's CSRF token into the forms the library
  renders (the jobs list's start form).
- :func:`jobs_options` gives all three to :func:`wsgi_logstream.jobs`.

An admin action (:func:`admin_action`) starts a job for the objects selected
in a changelist and redirects to its page; the target finds their primary keys
with :func:`selected`. A target that uses the ORM in its own thread should be
wrapped in :func:`uses_db`, which closes that thread's connections when it
ends (Django closes a request's connections, and a job's thread is not one).

Serve these views with a WSGI server (gunicorn, uWSGI, mod_wsgi). Under ASGI,
Django reads a synchronous streaming response to its end before sending any
of it (``StreamingHttpResponse.__aiter__``, with a warning): the log would
arrive all at once when the operation ends.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Any, Callable, Sequence, TypeVar
from urllib.parse import urlencode

from django.contrib import admin, messages  # type: ignore[import-untyped]
from django.db import connections  # type: ignore[import-untyped]
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse  # type: ignore[import-untyped]
from django.http.request import RawPostDataException  # type: ignore[import-untyped]
from django.middleware.csrf import get_token  # type: ignore[import-untyped]
from django.urls import URLPattern, re_path, reverse  # type: ignore[import-untyped]

from .errors import HttpError, Refused
from .mount import Reply, call_mounted, mounted_environ
from .pipeline import authorize, refuse_cross_site

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication, WSGIEnvironment
    from django.db.models import QuerySet  # type: ignore[import-untyped]
    from django.http import HttpResponseBase

    from .jobs import JobsApp, JobsOptions
    from .options import Authorize
    from .record import JobRecord

__all__ = [
    "MODEL",
    "REQUEST",
    "SELECTED",
    "admin_action",
    "csrf_fields",
    "hook",
    "jobs_options",
    "owner",
    "request_of",
    "selected",
    "stream_view",
    "urls",
    "uses_db",
]

#: The environ key that holds the Django request.
REQUEST = "wsgi_logstream.django.request"
#: The environ key of an admin action's job: the selected objects' primary keys, as strings.
SELECTED = "wsgi_logstream.django.selected"
#: The environ key of an admin action's job: the model, as ``app_label.model_name``.
MODEL = "wsgi_logstream.django.model"

DjangoAuthorize = Callable[[HttpRequest, str, "JobRecord | None"], bool]
View = Callable[..., "HttpResponseBase"]
F = TypeVar("F", bound=Callable[..., Any])


def request_of(environ: WSGIEnvironment) -> HttpRequest | None:
    """The Django request an environ was built from (None outside these views)."""
    request = environ.get(REQUEST)
    return request if isinstance(request, HttpRequest) else None


def hook(authorize: DjangoAuthorize) -> Authorize:
    """The core's ``authorize(environ, action, job)`` from a Django one, ``authorize(request, action, job)``."""
    if not callable(authorize):
        raise TypeError(f"authorize must be a callable (request, action, job) -> bool, got {authorize!r}")

    def ask(environ: WSGIEnvironment, action: str, job: JobRecord | None) -> bool:
        request = request_of(environ)
        if request is None:
            raise Refused("this stream is served through Django only")
        return authorize(request, action, job)

    return ask


def owner(environ: WSGIEnvironment) -> str | None:
    """Who starts a job: the logged-in user's username (None when anonymous or outside Django)."""
    request = request_of(environ)
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    return str(user.get_username())


def csrf_fields(environ: WSGIEnvironment) -> dict[str, str]:
    """Django's CSRF token as the hidden field its ``CsrfViewMiddleware`` reads (nothing outside Django)."""
    request = request_of(environ)
    if request is None:
        return {}
    return {"csrfmiddlewaretoken": get_token(request)}


def jobs_options(authorize: DjangoAuthorize | None = None) -> JobsOptions:
    """The options of :func:`wsgi_logstream.jobs` that make it Django's: the hook, the owner, the CSRF token."""
    options: JobsOptions = {"owner": owner, "form_fields": csrf_fields}
    if authorize is not None:
        options["authorize"] = hook(authorize)
    return options


def _body(request: HttpRequest) -> bytes:
    try:
        return bytes(request.body)
    except RawPostDataException:
        # Django parsed a multipart form from the stream already: hand its fields on (not its files).
        return urlencode(list(request.POST.lists()), doseq=True).encode()


def _response(reply: Reply) -> HttpResponseBase:
    whole = reply.whole
    response: HttpResponseBase
    if whole is not None:
        response = HttpResponse(whole, status=reply.status)
    else:
        response = StreamingHttpResponse(reply.body, status=reply.status)
        if reply.header("Content-Encoding") is None:
            response.headers["Content-Encoding"] = ""  # GZipMiddleware leaves it alone (module docstring)
    response.reason_phrase = reply.reason
    if reply.header("Content-Type") is None:
        del response.headers["Content-Type"]
    for name in dict.fromkeys(key.lower() for key, _ in reply.headers):
        response.headers[name] = reply.header(name)
    return response


def stream_view(app: WSGIApplication) -> View:
    """A Django view serving ``app`` (a ``logstream`` or ``jobs`` app, or any WSGI app that returns its body).

    Mounted alone (``path("ops/reindex/", stream_view(app))``) the app is
    served at that one URL; :func:`urls` also mounts everything below it,
    which jobs need. Nothing below the one URL is routed, so its page asks the
    URL itself for its script and style (``?logstream_asset=<name>``) and this
    view answers those requests (``mount.call_mounted``),
    behind the same decorators: the host adds nothing.
    """
    if not callable(app):
        raise TypeError(f"app must be a WSGI application, got {app!r}")

    def view(request: HttpRequest, rest: str | None = None) -> HttpResponseBase:
        environ = mounted_environ(
            request.META, path=request.path, rest=rest, body=_body(request), scheme=request.scheme
        )
        environ[REQUEST] = request
        return _response(call_mounted(app, environ))

    view.wsgi_app = app  # type: ignore[attr-defined]
    return view


def urls(
    app: WSGIApplication, *, decorators: Sequence[Callable[[View], View]] = (), name: str | None = None
) -> list[URLPattern]:
    """URL patterns for ``include()``: ``app`` at the included path and everything below it.

    ``decorators`` wrap the view, outermost first (``[login_required,
    permission_required("app.perm", raise_exception=True)]``). ``name`` names
    the pattern; ``reverse(name, kwargs={"rest": job_id})`` is a job's URL.
    """
    view = stream_view(app)
    for decorator in reversed(decorators):
        view = decorator(view)
    return [re_path(r"^(?P<rest>.*)\Z", view, name=name)]


def selected(environ: WSGIEnvironment) -> list[str]:
    """The primary keys (as strings) an admin action started this job for; empty for a job started otherwise."""
    return list(environ.get(SELECTED, ()))


def _mount(at: str) -> str:
    if at.startswith("/"):
        return at.rstrip("/")
    return str(reverse(at, kwargs={"rest": ""})).rstrip("/")


def admin_action(
    jobs_app: JobsApp,
    *,
    at: str,
    description: str = "Run as a job",
    permissions: Sequence[str] | None = None,
) -> Callable[[Any, HttpRequest, QuerySet[Any]], HttpResponseBase | None]:
    """A ModelAdmin action that starts a job of ``jobs_app`` for the selected objects and redirects to its page.

    ``at`` is where ``jobs_app`` is mounted: a path (``"/ops/reindex/"``) or
    the ``name`` given to :func:`urls`. The target's environ carries the
    selected primary keys (:func:`selected`, ``environ[SELECTED]``) and the
    model (``environ[MODEL]``, ``"app_label.model_name"``). The app's
    ``authorize`` hook and its cross-site guard are asked as for a ``POST``
    that starts a job; a refusal, or
    ``max_concurrent`` jobs already running, is an error message on the
    changelist and nothing runs. ``permissions`` are the admin's own (``"change"``
    asks ``has_change_permission``), as for ``@admin.action``.
    """

    def start_job(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Any]) -> HttpResponseBase | None:
        mount = _mount(at)
        environ = mounted_environ(request.META, path=mount + "/", rest="", body=b"", scheme=request.scheme)
        environ.update({"REQUEST_METHOD": "POST", "QUERY_STRING": "", REQUEST: request})
        environ[SELECTED] = [str(pk) for pk in queryset.values_list("pk", flat=True)]
        environ[MODEL] = queryset.model._meta.label_lower
        try:
            authorize(jobs_app.options, environ, "start")
            refuse_cross_site(jobs_app.options, environ)
        except HttpError as error:
            modeladmin.message_user(request, error.message, level=messages.ERROR)
            return None
        who = jobs_app.settings.owner(environ) if jobs_app.settings.owner is not None else None
        try:
            handle = jobs_app.start(environ, owner=who)
        except RuntimeError as exc:
            modeladmin.message_user(request, f"{exc}; try again later", level=messages.ERROR)
            return None
        return HttpResponseRedirect(f"{mount}/{handle.id}")

    # The admin names an action by its function's name: one per jobs app.
    start_job.__name__ = "start_" + re.sub(r"\W+", "_", jobs_app.options.title.lower()).strip("_") + "_job"
    return admin.action(start_job, description=description, permissions=permissions)  # type: ignore[no-any-return]


def uses_db(target: F) -> F:
    """Wrap a target that uses the ORM: its thread's database connections are closed when it returns."""

    @functools.wraps(target)
    def run(*args: Any) -> Any:
        try:
            return target(*args)
        finally:
            connections.close_all()

    return run  # type: ignore[return-value]
