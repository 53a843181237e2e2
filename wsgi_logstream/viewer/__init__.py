"""The HTML page that streams a log: one document, its style and script in two files beside this one.

With JavaScript off it is a live page all the same: the log grows inside a
``column-reverse`` scroller, which keeps the view pinned to the newest line as
the browser parses more of the document, and the summary paragraph at the end
says plainly whether the operation succeeded (``:has()`` hides the "running"
badge once it arrives).

With JavaScript on, a small script (``viewer.js``) enhances that same page in
place while it streams. The HTML stream stays the primary feed, because it works
through every proxy and needs nothing from the script; the script watches
``<pre id="log">`` with a ``MutationObserver`` and adds:

* ANSI colour sequences (shown by the server as ``␛[31m``) rendered as coloured
  spans, built with ``textContent`` so log text never becomes markup;
* tracebacks folded into ``<details>``, their first line as the summary;
* follow and pause: the scroller becomes a normal one, kept at the bottom while
  following; scrolling up pauses, scrolling back to the bottom follows again;
* a filter box that hides the lines not containing its text (any case);
* a progress bar in the header mirroring the latest progress report, and the
  status (``✔``/``✖``) and progress in the tab's title;
* a download link: for a job, the same URL with ``?format=text`` (the job
  replays its history, nothing runs again); for a plain stream, a file made
  in the page from the lines it received (of those the cap removed, the newest
  8 million characters), since asking the URL again would run it again;
* a status banner in the header when the summary arrives, or, if the
  document ends without one, a banner saying the log is incomplete;
* a cap on the lines kept in the page (5000: older ones are removed, with a
  note saying how many), so a million-line operation never freezes the tab;
  keep-alive comments are removed too (without the script each leaves an
  empty line).

Reconnecting is for jobs only (``data-resumable="1"`` on ``<body>``): when the
document ends without its summary (a proxy or the network cut the stream),
the script resumes over Server-Sent Events from the last line it has,
``?format=sse&detail=1&since=<seq>``, and appends to the same log. A plain
stream never makes a second request to its URL: that would run the operation
again. So the page does not "upgrade itself" to SSE while the HTML stream
works; SSE is only the way back in after a cut.

The script and the style are files (``viewer.js``, ``viewer.css``) served by
:mod:`wsgi_logstream.assets` from the mount point's ``_assets/``, named by
their content's hash so browsers keep them; the page itself carries no inline
script or style attribute, so it is served with :data:`CSP`, which forbids
both. The script is an ordinary ``<script src>`` in the head, neither ``defer``
(a deferred script runs once the document is complete, and a log's document
is complete when the operation ends) nor ``async`` (it would run at a moment
that depends on the network, perhaps after the first lines were painted
unenhanced): like the inline script it replaces, it runs before the log starts,
and costs one request the browser then caches for a year.

The head is kept short (under 512 bytes for a title of a few dozen
characters): some proxies (Caddy's ``encode``) decide on the first write
whether to compress and buffer, and the first write is this head.
"""

from __future__ import annotations

import html
from datetime import datetime

from ..assets import ASSET_PREFIX, load

__all__ = ["CSP", "page_head"]

#: The log page's Content-Security-Policy: scripts and styles only from files of
#: this origin (no inline script or style, no eval), EventSource to this origin,
#: no plugins, frames, forms or <base> elsewhere.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'self'"
)


_RESUMABLE = ' data-resumable="1"'


def page_head(title: str, started: float, *, resumable: bool = False, assets: str = ASSET_PREFIX) -> str:
    """Everything up to the opening ``<pre>`` the log lines stream into.

    ``resumable`` (a job) lets the script reconnect over SSE when the stream is
    cut. ``assets`` is the URL of the ``_assets/`` directory as the page should
    write it (:func:`wsgi_logstream.assets.asset_prefix` of the request; the
    default suits an app at the site's root).
    """
    safe = html.escape(title)
    base = html.escape(assets)
    # The server's local time with its offset: unambiguous to a reader in another time zone.
    when = datetime.fromtimestamp(started).astimezone().isoformat(" ", "seconds")
    return (
        "<!doctype html>"
        '<html lang=en><head><meta charset=utf-8><meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{safe}</title>"
        f'<link rel=stylesheet href="{base}{load("viewer.css").hashed_name}">'
        f'<script src="{base}{load("viewer.js").hashed_name}"></script></head>\n'
        f"<body{_RESUMABLE if resumable else ''}><header><h1>{safe}</h1><span id=state>running</span>"
        f"<time>{when}</time></header>\n"
        '<main><div><pre id="log">\n'
    )
