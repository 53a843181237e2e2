"""The HTML page that streams a log: one document, its style and script in two files beside this one.

With JavaScript off it is a live page all the same: the log grows inside a
``column-reverse`` scroller, which keeps the view pinned to the newest line as
the browser parses more of the document, and the summary paragraph at the end
says plainly whether the operation succeeded (``:has()`` hides the "running"
badge once it arrives).

With JavaScript on, a script (``viewer.js``) turns the log into data and shows
it through a window: ``<div id="log">`` holds only the rows near the viewport
(a few dozen), each placed at its line, while its height is that of the whole
log, so the scroll position means the whole log and a million lines neither
freeze the tab nor fill the DOM. It adds:

* ANSI colour sequences (shown by the server as ``␛[31m``) rendered as coloured
  spans, built with ``textContent`` so log text never becomes markup;
* tracebacks folded into ``<details>``, their first line as the summary;
* follow and pause: kept at the bottom while following; scrolling up pauses,
  scrolling back to the bottom follows again;
* a filter box that shows only the lines containing its text (any case), over
  the whole log the page received;
* a progress bar in the header mirroring the latest progress report, and the
  status (``✔``/``✖``) and progress in the tab's title;
* a download link: for a job, the same URL with ``?format=text`` (the job
  replays its history, nothing runs again); for a plain stream, a file made
  in the page from every line it received, since asking the URL again would
  run it again;
* a status banner in the header when the summary arrives, or, if the
  document ends without one, a banner saying the log is incomplete;
* links to lines: each line's sequence number is in its gutter (a click links
  to it, a shift-click makes a range), and ``#L<seq>`` or ``#L<from>-L<to>``
  in the URL scrolls there and highlights it, once the line is in the page (a
  running job's page waits for it, then stops following). Without JavaScript
  such a link opens the page as any other;
* times in the reader's time zone, or in UTC at a click on the header's
  switch (the choice kept in ``localStorage``): the start time in the header,
  and each line's time in its gutter (from the NDJSON records on a job's
  page, from each line's ``data-t`` on a plain stream's).

Where the lines come from depends on the page. A plain stream's page has only
its own document: the script watches ``<pre id="log">`` with a
``MutationObserver`` and moves each line the parser adds into its data (the
``<pre>`` is hidden and emptied as it fills); a line the network split is shown
as far as it came and taken again whole. It never makes a second request to its
URL, which would run the operation again. A job's page
(``data-resumable="1"`` on the script) does not let the browser parse its
history at all: building an element per line costs the parser about 2 µs a
line on the main thread, in one task for a history that arrives at once
(0.23 s measured for 100,000 lines, so about two seconds for a million). The script stands just before ``<pre id="log">``,
so it stops the document there (``window.stop()``) and reads the same job as
NDJSON with ``fetch``, in slices of about 12 ms of work; when that stream is
cut (or refused) it asks again from the last sequence number it has
(``?since=<seq>``, so no line comes twice and none is skipped; a line the cut
split is read again whole), waiting 0.5 s, then 1, 2, 4 ... at most 30 s between
attempts, and says so in the header, until the summary arrives. A 4xx answer
(the job was forgotten) ends the attempts with the server's message.

The script and the style are files (``viewer.js``, ``viewer.css``) served by
:mod:`wsgi_logstream.assets` from the mount point's ``_assets/``, named by
their content's hash so browsers keep them; the page itself carries no inline
script or style attribute, so it is served with :data:`CSP`, which forbids
both. The script is an ordinary ``<script src>`` just before the log, neither
``defer`` (a deferred script runs once the document is complete, and a log's
document is complete when the operation ends) nor ``async`` (it would run at a
moment that depends on the network, perhaps after lines were painted
unenhanced); it costs one request the browser then caches for a year. It is
not in the head because a job's page stops the document: stopped before its
body, the page was never rendered by Chromium in our tests.

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
#: this origin (no inline script or style, no eval), fetch to this origin,
#: no plugins, frames, forms or <base> elsewhere.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'self'"
)


_RESUMABLE = ' data-resumable="1"'


def page_head(
    title: str, started: float, *, resumable: bool = False, assets: str = ASSET_PREFIX, actions: str = ""
) -> str:
    """Everything up to the opening ``<pre>`` the log lines stream into.

    ``resumable`` (a job) has the script read the job as NDJSON and resume it
    by sequence number after a cut. ``assets`` is the URL of the ``_assets/`` directory as the page should
    write it (:func:`wsgi_logstream.assets.asset_prefix` of the request; the
    default suits an app at the site's root). ``actions`` is markup for the
    header (a job's cancel form), built and escaped by the caller.
    """
    safe = html.escape(title)
    base = html.escape(assets)
    # The server's local time with its offset: unambiguous to a reader in another time zone.
    when = datetime.fromtimestamp(started).astimezone().isoformat(" ", "seconds")
    return (
        "<!doctype html>"
        '<html lang=en><head><meta charset=utf-8><meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{safe}</title>"
        f'<link rel=stylesheet href="{base}{load("viewer.css").hashed_name}"></head>\n'
        f"<body><header><h1>{safe}</h1><span id=state>running</span><time>{when}</time>{actions}</header>\n"
        f'<main><div><script src="{base}{load("viewer.js").hashed_name}"{_RESUMABLE if resumable else ""}></script>'
        '<pre id="log">\n'
    )
