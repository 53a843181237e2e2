"""A Flask app whose cache rebuild streams its log to the browser.

Run it with Flask's development server::

    python examples/flask_app.py            # http://127.0.0.1:5000/ (or: python examples/flask_app.py 5001)

or under gunicorn, as in production::

    gunicorn -c examples/gunicorn.conf.py examples.flask_app:app

Then ``curl -N http://127.0.0.1:5000/ops/rebuild-cache`` (port 8000 under
gunicorn) prints each line as the rebuild logs it, ending with the summary::

    -- Rebuild the cache: started 2025-01-01 12:00:00 --
    2025-01-01 12:00:00,209 INFO    shop.cache: rebuilding 5 sections of the cache
    2025-01-01 12:00:00,509 INFO    shop.cache: section 1/5 rebuilt (cache-v1)
    ...
    2025-01-01 12:00:01,711 INFO    shop.cache: cache cache-v1 is warm
    -- ok (after 1.50s: 7 lines, 0 dropped) --

The stream is mounted on ``app.wsgi_app``, outside Flask: a request for it
never reaches Flask's routing, and every other request (``/`` here) is Flask's
as before. The operation runs in a thread of its own, so it opens an app
context itself when it needs ``current_app``.
"""

from __future__ import annotations

import logging
import sys
from typing import Any
from urllib.parse import parse_qs

from flask import Flask, current_app

from wsgi_logstream import LogStreamMiddleware, wait_cancelled

app = Flask(__name__)
app.config["CACHE_VERSION"] = "cache-v1"
log = logging.getLogger("shop.cache")


@app.get("/")
def index() -> str:
    return (
        "<!doctype html><title>Shop admin</title><h1>Shop admin</h1>"
        '<p><a href="/ops/rebuild-cache?format=html">Rebuild the cache</a> and watch it happen.</p>'
    )


def rebuild_cache(environ: dict[str, Any]) -> None:
    """Pretend to rebuild ``?sections=`` (5) sections, ``?delay=`` (0.3) seconds each."""
    query = parse_qs(environ.get("QUERY_STRING", ""))
    sections = max(1, min(int(query.get("sections", ["5"])[0]), 100))
    delay = max(0.0, min(float(query.get("delay", ["0.3"])[0]), 60.0))
    with app.app_context():
        version = current_app.config["CACHE_VERSION"]
        log.info("rebuilding %d sections of the cache", sections)
        for number in range(1, sections + 1):
            if wait_cancelled(delay):
                log.warning("cancelled after %d sections", number - 1)
                return
            log.info("section %d/%d rebuilt (%s)", number, sections, version)
        log.info("cache %s is warm", version)


app.wsgi_app = LogStreamMiddleware(  # type: ignore[method-assign]
    app.wsgi_app,
    {"/ops/rebuild-cache": rebuild_cache},
    title="Rebuild the cache",
    on_disconnect="cancel",
)

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[1]) if len(sys.argv) > 1 else 5000, threaded=True)
