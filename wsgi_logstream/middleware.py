"""``LogStreamMiddleware``: mount log streams at paths inside any WSGI app.

::

    from wsgi_logstream import LogStreamMiddleware
    application = LogStreamMiddleware(application, {"/admin/reindex": reindex})

A request whose ``PATH_INFO`` is a mounted path (with or without a trailing
slash) is served by ``logstream(target, **options)``, with the path moved from
``PATH_INFO`` to ``SCRIPT_NAME`` as WSGI mounting does. Every other request is
handed to ``app`` untouched: its environ, its response and its iterable's
``close()`` are the app's own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from .app import LogStreamApp
from .options import Options

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["LogStreamMiddleware"]


class LogStreamMiddleware:
    def __init__(self, app: WSGIApplication, routes: Mapping[str, Callable[..., Any]], **options: Any) -> None:
        if not callable(app):
            raise TypeError(f"app must be a WSGI application, got {app!r}")
        if not isinstance(routes, Mapping) or not routes:
            raise TypeError("routes must be a non-empty mapping of path to target")
        shared = Options.from_kwargs(**options)
        self.app = app
        self.routes: dict[str, LogStreamApp] = {}
        for path, target in routes.items():
            if not isinstance(path, str) or not path.startswith("/"):
                raise ValueError(f"route paths must start with '/', got {path!r}")
            path = path.rstrip("/") or "/"
            if path in self.routes:
                raise ValueError(f"route {path!r} is given twice")
            self.routes[path] = LogStreamApp(target, shared)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        key = path.rstrip("/") or "/"
        stream = self.routes.get(key)
        if stream is None:
            return self.app(environ, start_response)
        environ = dict(environ)
        environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + key.rstrip("/")
        environ["PATH_INFO"] = path[len(key.rstrip("/")) :]
        return stream(environ, start_response)
