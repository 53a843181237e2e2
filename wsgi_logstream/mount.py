"""Calling a stream or jobs app from inside a framework's view, without buffering it.

The Django and Flask integrations (:mod:`wsgi_logstream.django`,
:mod:`wsgi_logstream.flask`) differ only in how they read a request and build
a response; what they share is here, standard library only:

- :func:`mounted_environ`: the WSGI environ the app sees. ``SCRIPT_NAME`` is
  the URL pattern's mount point and ``PATH_INFO`` what follows it, so the
  app's links and redirects (``/<mount>/<job id>``) are right; the body the
  framework already read (its CSRF check reads a form) is handed over as a
  fresh ``wsgi.input``.
- :func:`call_app`: run the app and keep its status, headers and iterable
  apart, for the framework's response object to carry. Nothing is read from
  the iterable here: the framework's server pulls it chunk by chunk and must
  call its ``close()``.
- :func:`call_mounted`: :func:`call_app` for a view, which also answers the
  page's own assets when the view is mounted at one URL. The host's URL conf
  routes nothing below that URL, so :func:`mounted_environ` has the page ask
  the URL itself (``?logstream_asset=viewer.<hash>.js``,
  :data:`wsgi_logstream.assets.ASSETS_AT`).
"""

from __future__ import annotations

import io
import itertools
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from .assets import ASSET_QUERY, ASSETS_AT, requested_asset, serve_asset

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

__all__ = ["Reply", "call_app", "call_mounted", "mounted_environ", "wsgi_string"]


def wsgi_string(text: str) -> str:
    """A decoded URL path as WSGI carries it: its UTF-8 bytes, each as one latin-1 character (PEP 3333)."""
    return text.encode("utf-8", "surrogateescape").decode("latin-1")


def mounted_environ(
    base: Mapping[str, Any], *, path: str, rest: str | None, body: bytes | None, scheme: str
) -> dict[str, Any]:
    """A copy of ``base`` for an app mounted at ``path`` minus ``rest``.

    ``path`` is the request's whole decoded path (the script prefix included),
    ``rest`` the part the URL pattern left for the app (None: the pattern is
    the app's whole URL, and the app sees ``PATH_INFO`` empty, and its page
    finds its assets at that URL: :func:`call_mounted`). ``body`` is
    what the framework read (None: it read nothing, and ``wsgi.input`` and
    ``CONTENT_LENGTH`` are left for the app, which refuses a body too large).
    """
    environ = dict(base)
    if rest is None:
        mount, path_info = path, ""
        environ[ASSETS_AT] = f"?{ASSET_QUERY}="
    else:
        if rest and not path.endswith(rest):
            raise ValueError(f"the matched rest {rest!r} does not end the path {path!r}")
        mount, path_info = path[: len(path) - len(rest)], "/" + rest
    environ["SCRIPT_NAME"] = wsgi_string(mount.rstrip("/"))
    environ["PATH_INFO"] = wsgi_string(path_info)
    if body is not None:
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body)) if body or environ.get("CONTENT_LENGTH") else ""
    environ.setdefault("wsgi.version", (1, 0))
    environ.setdefault("wsgi.url_scheme", scheme)
    environ.setdefault("wsgi.errors", sys.stderr)
    environ.setdefault("wsgi.multithread", True)
    environ.setdefault("wsgi.multiprocess", True)
    environ.setdefault("wsgi.run_once", False)
    return environ


@dataclass
class Reply:
    """A WSGI app's answer, in parts: ``body`` is still unread and must be closed by whoever reads it."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: Iterable[bytes]

    def header(self, name: str) -> str | None:
        values = [value for key, value in self.headers if key.lower() == name.lower()]
        return ", ".join(values) if values else None

    @property
    def whole(self) -> bytes | None:
        """The body, if the app gave it whole with its length (an error, the jobs list, 303): else None.

        Such a body is an ordinary response to the framework (compressed or
        answered with 304 as its middleware sees fit); anything else is a stream.
        """
        if self.header("Content-Length") is None or not isinstance(self.body, (list, tuple)):
            return None
        return b"".join(self.body)


def call_app(app: WSGIApplication, environ: dict[str, Any]) -> Reply:
    """Call ``app``; its status, headers and (unread) body. ``write()`` is not offered: our apps never use it."""
    started: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        if started and exc_info is None:
            raise AssertionError("start_response called twice without exc_info")
        started[:] = [(status, list(headers))]

        def write(data: bytes) -> None:
            raise NotImplementedError("a mounted app must return its body, not write() it")

        return write

    body: Iterable[bytes] = app(environ, start_response)
    if not started:
        # An app that starts its response on the first next(): pull that chunk now.
        iterator = iter(body)
        try:
            first = [next(iterator)]
        except StopIteration:
            first = []
        except BaseException:
            _close(body)
            raise
        body = _Chained(itertools.chain(first, iterator), body)
    if not started:
        _close(body)
        raise AssertionError(f"{app!r} returned without calling start_response")
    status, headers = started[0]
    code, _, reason = status.partition(" ")
    return Reply(int(code), reason, headers, body)


def call_mounted(app: WSGIApplication, environ: dict[str, Any]) -> Reply:
    """:func:`call_app`, or, for a view mounted at one URL asked for one of its page's assets
    (:func:`~wsgi_logstream.assets.requested_asset`), that asset: the app is not called."""
    name = requested_asset(environ)
    if name is None:
        return call_app(app, environ)
    return call_app(lambda env, start_response: serve_asset(env, start_response, name), environ)


class _Chained:
    """An iterator over the rest of ``original``'s chunks whose ``close()`` is ``original``'s."""

    def __init__(self, chunks: Iterable[bytes], original: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._original = original

    def __iter__(self) -> _Chained:
        return self

    def __next__(self) -> bytes:
        return next(self._chunks)

    def close(self) -> None:
        _close(self._original)


def _close(body: Iterable[bytes]) -> None:
    close = getattr(body, "close", None)
    if close is not None:
        close()
