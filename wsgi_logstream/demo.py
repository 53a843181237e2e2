"""The demo: an index page linking a pretend import in each format.

``python -m wsgi_logstream`` (or ``wsgi-logstream demo``) serves it on
http://127.0.0.1:8000/ with ``wsgiref``. ``curl -N 'http://127.0.0.1:8000/import'``
shows the lines arrive one by one.
"""

from __future__ import annotations

import html
import logging
import random
from typing import TYPE_CHECKING, Any, Iterable
from urllib.parse import parse_qs

from .capture import cancelled, progress, wait_cancelled
from .middleware import LogStreamMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["demo_import", "make_app"]

log = logging.getLogger("demo.import")


def demo_import(environ: dict[str, Any]) -> None:
    """Pretend to import ``?rows=N`` rows (default 40), at ``?delay=`` seconds each."""
    query = parse_qs(environ.get("QUERY_STRING", ""))
    rows = min(int(query.get("rows", ["40"])[0] or 40), 100_000)
    delay = min(float(query.get("delay", ["0.15"])[0] or 0.15), 5.0)
    rng = random.Random(rows)
    log.info("starting import of %d rows", rows)
    for row in range(1, rows + 1):
        if wait_cancelled(delay) or cancelled():
            log.warning("cancelled at row %d", row)
            return
        if row % 13 == 0:
            log.warning("row %d: duplicate key <id=%d>, skipped", row, rng.randrange(10_000))
        else:
            log.info("row %d imported (%d fields)", row, rng.randrange(5, 20))
        progress(row, rows)
    if query.get("fail"):
        raise RuntimeError("the last batch could not be committed")
    log.info("import finished: %d rows", rows)


_FORMATS = (
    ("html", "a page that streams, with or without JavaScript"),
    ("text", "plain text, for curl -N"),
    ("sse", "Server-Sent Events, for EventSource"),
    ("ndjson", "one JSON object per line, for scripts"),
)


def _index(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    if environ.get("PATH_INFO", "/") not in ("", "/"):
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"not found\n"]
    base = html.escape(environ.get("SCRIPT_NAME", ""))
    items = "".join(
        f'<li><a href="{base}/import?format={name}">{name}</a>: {html.escape(text)}</li>' for name, text in _FORMATS
    )
    body = (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>wsgi_logstream demo</title>"
        "<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:2em auto;padding:0 1em}</style>"
        "</head><body><h1>wsgi_logstream demo</h1><p>A pretend import that logs a line every 150 ms. "
        "Open it in any format:</p>"
        f"<ul>{items}</ul><p>Or one that fails at the end: "
        f'<a href="{base}/import?format=html&amp;fail=1&amp;rows=10">html</a>.</p>'
        f"<p>From a terminal: <code>curl -N http://{html.escape(environ.get('HTTP_HOST', 'localhost'))}"
        f"{base}/import</code></p></body></html>"
    ).encode()
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))])
    return [body]


def make_app(**options: Any) -> WSGIApplication:
    """The demo site: ``/`` links ``/import`` in each format."""
    options.setdefault("title", "Demo import")
    options.setdefault("on_disconnect", "cancel")
    return LogStreamMiddleware(_index, {"/import": demo_import}, **options)
