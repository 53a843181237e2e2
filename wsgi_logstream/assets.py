"""The viewer's static files, served from ``<mount point>/_assets/`` by the app that serves the page.

The log page's script and style are package data files (``wsgi_logstream/viewer/``)
rather than inline text, so that the page can carry a ``Content-Security-Policy``
forbidding inline script (an escaping mistake anywhere then cannot become script
execution) and so that the browser caches them instead of receiving them again
at the top of every stream.

Each file has two URLs below the mount point's ``_assets/``:

* ``viewer.<hash>.js``, the name the page uses: the hash is the content's, so
  the URL changes when the file does and the answer may be cached for a year
  (``immutable``);
* ``viewer.js``, the plain name, for people and tools: cached briefly and then
  revalidated with its ``ETag``.

A hashed name whose hash is not the current one (a page from before an
upgrade, or another version of the app behind the same load balancer) gets the
current file with the short lifetime: a page still works, and no cache keeps
the wrong bytes under that URL for a year.

Nothing here runs anything: :func:`serve_asset` answers ``GET`` and ``HEAD`` from
bytes read once from the package, ``404`` for names it does not know, ``405``
for other methods. The page refers to the files with :func:`asset_url`, a URL
relative to the page's own, so it also resolves behind a proxy that maps a
path prefix the application never sees.

A framework view mounted at one URL (``stream_view`` of
:mod:`wsgi_logstream.django` or :mod:`wsgi_logstream.flask`, not their
``urls()`` or ``blueprint()``) has no ``_assets/`` below it: the host's URL
conf routes that one URL and nothing under it. Such a view sets
:data:`ASSETS_AT` in the environ to ``?logstream_asset=``, so the page asks
its own URL for its files (``?logstream_asset=viewer.<hash>.js``), and answers
those requests itself (:func:`requested_asset`); the host adds nothing.
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Iterable
from urllib.parse import parse_qs, quote

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = [
    "ASSETS",
    "ASSETS_AT",
    "ASSET_PREFIX",
    "ASSET_QUERY",
    "Asset",
    "asset_prefix",
    "asset_url",
    "load",
    "requested_asset",
    "serve_asset",
]

#: Where the assets live below the mount point of the app that serves the page.
ASSET_PREFIX = "/_assets/"

#: The environ key that, when set, is where the page finds its assets instead (a URL prefix the asset's name is
#: appended to): a view mounted at one URL sets it to ``"?" + ASSET_QUERY + "="``.
ASSETS_AT = "wsgi_logstream.assets_at"
#: The query field of an asset asked for at a view mounted at one URL.
ASSET_QUERY = "logstream_asset"

#: The files served, by plain name, with their media types.
ASSETS = {
    "viewer.js": "text/javascript; charset=utf-8",
    "viewer.css": "text/css; charset=utf-8",
    "index.css": "text/css; charset=utf-8",
}

#: A year: the longest lifetime caches honour; the content cannot change under a hashed URL.
HASHED_CACHE = "public, max-age=31536000, immutable"
#: The plain name (or an old hash) may change with an upgrade: a few minutes, then revalidate.
PLAIN_CACHE = "public, max-age=300"

_HASHED = re.compile(r"(?P<stem>[a-z]+)\.(?P<hash>[0-9a-f]{12})\.(?P<ext>js|css)")
_ALLOW = "GET, HEAD"


@dataclass(frozen=True)
class Asset:
    """One file: its bytes, the URL name with its hash, and its strong ``ETag``."""

    name: str
    media_type: str
    body: bytes
    digest: str  # the first 12 hex digits of the SHA-256 of body, as in the hashed name
    etag: str

    @property
    def hashed_name(self) -> str:
        stem, _, ext = self.name.rpartition(".")
        return f"{stem}.{self.digest}.{ext}"


_loaded: dict[str, Asset] = {}
_lock = threading.Lock()


def load(name: str) -> Asset:
    """The asset called ``name`` (a key of :data:`ASSETS`), read from the package once."""
    asset = _loaded.get(name)
    if asset is not None:
        return asset
    if name not in ASSETS:
        raise KeyError(f"no asset named {name!r}: the assets are {', '.join(ASSETS)}")
    with _lock:
        asset = _loaded.get(name)
        if asset is None:
            body = resources.files("wsgi_logstream.viewer").joinpath(name).read_bytes()
            sha = hashlib.sha256(body).digest()
            etag = '"' + base64.urlsafe_b64encode(sha).decode().rstrip("=") + '"'
            asset = Asset(name, ASSETS[name], body, sha.hex()[:12], etag)
            _loaded[name] = asset
    return asset


def _find(name: str) -> tuple[Asset, bool] | None:
    """The asset a URL name means, and whether that name is the current hashed one."""
    if name in ASSETS:
        return load(name), False
    match = _HASHED.fullmatch(name)
    if match is None:
        return None
    plain = f"{match['stem']}.{match['ext']}"
    if plain not in ASSETS:
        return None
    asset = load(plain)
    return asset, match["hash"] == asset.digest


def _matches(header: str, etag: str) -> bool:
    # If-None-Match uses the weak comparison (RFC 9110 13.1.2): W/ does not matter.
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == etag:
            return True
    return False


def serve_asset(environ: WSGIEnvironment, start_response: StartResponse, name: str) -> Iterable[bytes]:
    """Answer a request for the asset ``name`` (the part of the path after :data:`ASSET_PREFIX`)."""
    method = environ.get("REQUEST_METHOD", "GET")
    found = _find(name)
    if found is None:
        return _plain(start_response, "404 Not Found", "no such asset\n")
    if method not in ("GET", "HEAD"):
        return _plain(start_response, "405 Method Not Allowed", f"use {_ALLOW}\n", [("Allow", _ALLOW)])
    asset, current = found
    headers = [
        ("ETag", asset.etag),
        ("Cache-Control", HASHED_CACHE if current else PLAIN_CACHE),
        ("X-Content-Type-Options", "nosniff"),
    ]
    if _matches(environ.get("HTTP_IF_NONE_MATCH", ""), asset.etag):
        start_response("304 Not Modified", headers)
        return []
    start_response("200 OK", [("Content-Type", asset.media_type), ("Content-Length", str(len(asset.body))), *headers])
    return [] if method == "HEAD" else [asset.body]


def _plain(start_response: StartResponse, status: str, text: str, extra: Iterable[tuple[str, str]] = ()) -> list[bytes]:
    body = text.encode()
    start_response(
        status,
        [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
            *extra,
        ],
    )
    return [body]


def _segment(text: str) -> str:
    # WSGI path strings hold the URL's bytes decoded as latin-1 (PEP 3333).
    try:
        raw = text.encode("latin-1")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "surrogateescape")
    return quote(raw, safe="!$&'()*+,=@-._~")


def asset_prefix(environ: WSGIEnvironment) -> str:
    """A URL relative to the requested page's own that resolves to ``<mount point>/_assets/``.

    The mount point is ``SCRIPT_NAME``, the page ``SCRIPT_NAME + PATH_INFO``.
    A relative URL, rather than ``SCRIPT_NAME`` itself, because a proxy may map
    a prefix the application never sees (``/logs/`` to ``/``): the browser
    resolves it against the URL it actually asked for. A page at the mount
    point itself (empty ``PATH_INFO``) has the mount's last segment as the last
    segment of its URL, so the prefix starts with that segment; each further
    directory level in ``PATH_INFO`` costs a ``../``. :data:`ASSETS_AT` in the
    environ, where a view mounted at one URL sets it, is the answer instead.
    """
    at = environ.get(ASSETS_AT)
    if isinstance(at, str):
        return at
    script = str(environ.get("SCRIPT_NAME", ""))
    path = str(environ.get("PATH_INFO", ""))
    depth = path.count("/")
    if depth:
        return "../" * (depth - 1) + ASSET_PREFIX.lstrip("/")
    last = script.rpartition("/")[2]
    if not last:  # the site's root, or a mount point ending in "/"
        return ASSET_PREFIX.lstrip("/")
    return _segment(last) + ASSET_PREFIX  # ":" is quoted: the segment cannot pass for a URL scheme


def asset_url(environ: WSGIEnvironment, name: str) -> str:
    """The URL, relative to the requested page, of the current version of asset ``name``."""
    return asset_prefix(environ) + load(name).hashed_name


def requested_asset(environ: WSGIEnvironment) -> str | None:
    """The asset name a request to a view mounted at one URL asks for (``?logstream_asset=<name>``), or None.

    Only where :data:`ASSETS_AT` is the query form: elsewhere that query field means nothing, and the app
    gets the request as it came.
    """
    if environ.get(ASSETS_AT) != f"?{ASSET_QUERY}=":
        return None
    values = parse_qs(str(environ.get("QUERY_STRING", "")), keep_blank_values=True).get(ASSET_QUERY)
    return values[-1] if values else None
