"""Jobs: an import people can start, leave, come back to, share and cancel.

Run it with the standard library alone::

    python examples/jobs_app.py            # or: python examples/jobs_app.py 8001

or under gunicorn (one worker: jobs live in that process's memory)::

    gunicorn -c examples/gunicorn.conf.py --workers 1 examples.jobs_app:application

Open http://127.0.0.1:8000/import and press "Start a new run", or from a terminal::

    $ curl -si -X POST 'http://127.0.0.1:8000/import?rows=5' | grep -i '^location'
    Location: /import/0zdzIVFFt2b_nflJ
    $ curl -N http://127.0.0.1:8000/import/0zdzIVFFt2b_nflJ
    -- Import: started 2025-01-01 12:00:00 --
    2025-01-01 12:00:00,101 INFO    import: importing 5 rows
    -- progress 1/5 (20%) --
    2025-01-01 12:00:00,602 INFO    import: row 1 stored
    ...
    -- ok (after 2.51s: 7 lines, 0 dropped) --

Press Ctrl-C in the middle and run the same ``curl -N`` again: the import went
on, and the log starts from its first line (``?since=N`` starts after line N).
``curl -X POST http://127.0.0.1:8000/import/<id>/cancel`` asks it to stop.
``?rows=N&delay=S`` change its size and pace.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any, Iterable
from urllib.parse import parse_qs
from wsgiref.simple_server import make_server

from wsgi_logstream import LogStreamMiddleware, jobs, progress, wait_cancelled

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

log = logging.getLogger("import")


def run_import(environ: dict[str, Any]) -> None:
    """The long operation: store ``rows`` rows, ``delay`` seconds each, until done or cancelled."""
    query = parse_qs(environ.get("QUERY_STRING", ""))
    rows = int(query.get("rows", ["20"])[0])
    delay = float(query.get("delay", ["0.5"])[0])
    log.info("importing %d rows", rows)
    for row in range(1, rows + 1):
        progress(row - 1, rows)
        if wait_cancelled(delay):
            log.warning("cancelled before row %d", row)
            return
        log.info("row %d stored", row)
    progress(rows, rows)


def site(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The rest of the site: here, a page that points to the imports."""
    if environ.get("PATH_INFO") in ("", "/"):
        body = b'<!doctype html><title>Admin</title><p>Admin. <a href="/import">Imports</a>'
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))])
        return [body]
    start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
    return [b"not found\n"]


imports = jobs(run_import, title="Import", max_concurrent=4, max_history=5000, keep_finished=24 * 3600)
application = LogStreamMiddleware(site, {"/import": imports})


if __name__ == "__main__":
    from wsgi_logstream.server import QuietHandler, ThreadingWSGIServer

    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    with make_server("127.0.0.1", port, application, ThreadingWSGIServer, QuietHandler) as server:
        print(f"serving on http://127.0.0.1:{port}/import", flush=True)
        server.serve_forever()
