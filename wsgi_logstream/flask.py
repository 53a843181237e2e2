"""Streams and jobs as Flask routes, behind Flask's request handling, Flask-Login and Flask-WTF's CSRF.

``LogStreamMiddleware`` around ``app.wsgi_app`` serves a stream before Flask
sees the request: no ``before_request``, no ``login_required``. Mounted as a
blueprint instead, a stream or a jobs app is a Flask view::

    from flask_login import current_user, login_required
    from wsgi_logstream import jobs, logstream
    from wsgi_logstream import flask as logstream_flask

    def owner_or_admin(action, job):       # asked inside the request: current_user, request and g work
        return job is None or current_user.is_admin or job.owner == current_user.get_id()

    rebuilds = jobs(rebuild, title="Rebuild", **logstream_flask.jobs_options(authorize=owner_or_admin))
    app.register_blueprint(
        logstream_flask.blueprint(rebuilds, "rebuilds", decorators=[login_required]), url_prefix="/ops/rebuild"
    )

The blueprint answers at its prefix and everything below it (a job's page,
its cancel); its ``before_request`` functions, and the app's, run first, as
for any route. The view calls the app with ``request.environ``, its
``SCRIPT_NAME`` set to the mount point and ``PATH_INFO`` to the rest; the body
Flask read (Flask-WTF reads the form to check its token) is handed over as a
fresh ``wsgi.input``. A stream is returned as a streamed ``Response`` over
the app's own iterable (``direct_passthrough``: nothing buffered; Werkzeug's
``close()`` closes it); an answer the app gives whole (an error, the jobs
list, a ``303``) as an ordinary one. Streams carry an empty
``Content-Encoding``, as under :mod:`wsgi_logstream.django`, so compression
middleware that respects an existing encoding leaves them alone.

The hooks, Flask-flavoured:

- :func:`hook` turns ``authorize(action, job)``, called inside the request
  (``flask_login.current_user``, ``flask.request``, ``flask.g``), into the
  core's ``authorize(environ, action, job)``. Outside a Flask request it refuses.
- :func:`owner` names who started a job: Flask-Login's
  ``current_user.get_id()`` (None when anonymous or without Flask-Login).
- :func:`csrf_fields` gives Flask-WTF's ``csrf_token`` field when
  ``CSRFProtect`` is on the app, so the jobs list's start form passes its
  check as a Flask-WTF form would (``X-CSRFToken`` works for scripts, as
  Flask-WTF documents); nothing without it.
- :func:`jobs_options` gives all three to :func:`wsgi_logstream.jobs`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Callable, Sequence
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, has_request_context, request

from .errors import Refused
from .mount import Reply, call_mounted, mounted_environ
from .request import MAX_BODY

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication, WSGIEnvironment

    from .jobs import JobsOptions
    from .options import Authorize
    from .record import JobRecord

__all__ = ["blueprint", "csrf_fields", "hook", "jobs_options", "owner", "stream_view"]

FlaskAuthorize = Callable[[str, "JobRecord | None"], bool]
View = Callable[..., Response]

#: Every method goes to the app, which answers 405 with its own ``Allow`` for those it does not serve.
_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
#: Set in the environ of a request served by these views.
MOUNTED = "wsgi_logstream.flask"


def _ours(environ: WSGIEnvironment) -> bool:
    return bool(environ.get(MOUNTED)) and has_request_context()


def hook(authorize: FlaskAuthorize) -> Authorize:
    """The core's ``authorize(environ, action, job)`` from a Flask one, ``authorize(action, job)``."""
    if not callable(authorize):
        raise TypeError(f"authorize must be a callable (action, job) -> bool, got {authorize!r}")

    def ask(environ: WSGIEnvironment, action: str, job: JobRecord | None) -> bool:
        if not _ours(environ):
            raise Refused("this stream is served through Flask only")
        return authorize(action, job)

    return ask


def owner(environ: WSGIEnvironment) -> str | None:
    """Who starts a job: Flask-Login's ``current_user.get_id()`` (None when anonymous or outside Flask)."""
    if not _ours(environ) or not hasattr(current_app, "login_manager"):  # LoginManager.init_app sets it
        return None
    from flask_login import current_user  # type: ignore[import-untyped]  # an optional dependency: imported only where used

    if not current_user.is_authenticated:
        return None
    user_id = current_user.get_id()
    return None if user_id is None else str(user_id)


def csrf_fields(environ: WSGIEnvironment) -> dict[str, str]:
    """Flask-WTF's ``csrf_token`` field when ``CSRFProtect`` guards the app; else nothing."""
    if not _ours(environ) or "csrf" not in current_app.extensions:
        return {}
    from flask_wtf.csrf import generate_csrf  # type: ignore[import-untyped]  # an optional dependency: imported only where used

    return {current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token"): str(generate_csrf())}


def jobs_options(authorize: FlaskAuthorize | None = None) -> JobsOptions:
    """The options of :func:`wsgi_logstream.jobs` that make it Flask's: the hook, the owner, the CSRF token."""
    options: JobsOptions = {"owner": owner, "form_fields": csrf_fields}
    if authorize is not None:
        options["authorize"] = hook(authorize)
    return options


def _body() -> bytes | None:
    if (request.content_length or 0) > MAX_BODY:
        return None  # not read: the app answers 413 without it
    body = request.get_data(cache=True)
    if not body and request.form:
        # The form was parsed from the stream already (Flask-WTF's check): hand its fields on.
        body = urlencode(list(request.form.items(multi=True))).encode()
    return body


def _response(reply: Reply) -> Response:
    whole = reply.whole
    if whole is not None:
        response = Response(whole, status=reply.status, headers=reply.headers)
    else:
        body = reply.body
        if isinstance(body, (list, tuple)):
            body = iter(body)  # a HEAD's empty body: not a sequence Werkzeug would give a Content-Length of 0
        response = Response(body, status=reply.status, headers=reply.headers, direct_passthrough=True)
        if reply.header("Content-Encoding") is None:
            response.headers["Content-Encoding"] = ""
    response.status = f"{reply.status} {reply.reason}"
    if reply.header("Content-Type") is None:
        del response.headers["Content-Type"]
    return response


def stream_view(app: WSGIApplication) -> View:
    """A Flask view function serving ``app``; it takes the rest of the path as ``rest`` (None: the whole URL).

    Routed at one URL alone (``rest`` None), nothing below it is routed, so its page asks the URL itself for its
    script and style (``?logstream_asset=<name>``) and this view answers those requests
    (``mount.call_mounted``); the host adds nothing.
    """
    if not callable(app):
        raise TypeError(f"app must be a WSGI application, got {app!r}")

    def view(rest: str | None = None) -> Response:
        environ = mounted_environ(
            request.environ,
            path=request.script_root + request.path,
            rest=rest,
            body=_body(),
            scheme=request.scheme,
        )
        environ[MOUNTED] = True
        return _response(call_mounted(app, environ))

    return view


def blueprint(
    app: WSGIApplication,
    name: str,
    *,
    decorators: Sequence[Callable[[View], View]] = (),
    import_name: str = __name__,
) -> Blueprint:
    """A blueprint serving ``app`` at its ``url_prefix`` and below; ``decorators`` wrap the view, outermost first."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"name must be a Python identifier (it names the blueprint), got {name!r}")
    view = stream_view(app)
    for decorator in reversed(decorators):
        view = decorator(view)
    bp = Blueprint(name, import_name)
    bp.add_url_rule("/", "stream", view, defaults={"rest": ""}, methods=_METHODS, provide_automatic_options=False)
    bp.add_url_rule("/<path:rest>", "stream", view, methods=_METHODS, provide_automatic_options=False)
    return bp
