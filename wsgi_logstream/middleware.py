"""``LogStreamMiddleware``: mount log streams at paths inside any WSGI app.

::

    from wsgi_logstream import LogStreamMiddleware
    application = LogStreamMiddleware(application, {"/admin/reindex": reindex})

A request whose ``PATH_INFO`` is a mounted path (with or without a trailing
slash) is served by ``logstream(target, **options)``, with the path moved from
``PATH_INFO`` to ``SCRIPT_NAME`` as WSGI mounting does. Every other request is
handed to ``app`` untouched: its environ, its response and its iterable's
``close()`` are the app's own.

A route may also be a :func:`wsgi_logstream.jobs` application; it is mounted
at its path with everything below it (``/admin/import/<job id>``)::

    application = LogStreamMiddleware(application, {"/admin/import": jobs(run_import)})

The middleware's options apply to every target it wraps. An app that is
already built (``jobs(...)`` or ``logstream(...)``) keeps the options it was
built with, so giving the middleware options as well as such a route is a
``TypeError``: the options would not reach it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from .app import LogStreamApp
from .assets import ASSET_PREFIX
from .jobs import JobsApp
from .options import Options, StreamOptions

if TYPE_CHECKING:
    from typing import Unpack

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["LogStreamMiddleware"]


class LogStreamMiddleware:
    def __init__(
        self, app: WSGIApplication, routes: Mapping[str, Callable[..., Any]], **options: Unpack[StreamOptions]
    ) -> None:
        if not callable(app):
            raise TypeError(f"app must be a WSGI application, got {app!r}")
        if not isinstance(routes, Mapping) or not routes:
            raise TypeError("routes must be a non-empty mapping of path to target")
        shared = Options.from_kwargs(**options)
        self.app = app
        self.routes: dict[str, LogStreamApp | JobsApp] = {}
        for path, target in routes.items():
            if not isinstance(path, str) or not path.startswith("/"):
                raise ValueError(f"route paths must start with '/', got {path!r}")
            path = path.rstrip("/") or "/"
            if path in self.routes:
                raise ValueError(f"route {path!r} is given twice")
            if isinstance(target, (JobsApp, LogStreamApp)):
                if options:
                    raise TypeError(
                        f"route {path!r} is an app built with its own options, so the middleware's options "
                        f"({', '.join(sorted(options))}) would not reach it: pass them where that app is built"
                    )
                self.routes[path] = target
            else:
                self.routes[path] = LogStreamApp(target, shared)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        key = path.rstrip("/") or "/"
        mounted = self.routes.get(key)
        if mounted is None:
            key = self._jobs_prefix(path)
            mounted = self.routes.get(key) if key else None
            if mounted is None:
                return self.app(environ, start_response)
        mount = key.rstrip("/")
        environ = dict(environ)
        environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + mount
        environ["PATH_INFO"] = path[len(mount) :]
        return mounted(environ, start_response)

    def _jobs_prefix(self, path: str) -> str | None:
        for prefix, mounted in self.routes.items():
            base = prefix.rstrip("/")
            # A plain stream's page loads its script and style from <mount>/_assets/: that path is its too.
            if path.startswith(base + "/") and (isinstance(mounted, JobsApp) or path.startswith(base + ASSET_PREFIX)):
                return prefix
        return None
