"""A plain WSGI site with a long operation whose log streams to the browser.

Run it with nothing but the standard library (a threaded ``wsgiref`` server)::

    python examples/plain_wsgi.py          # or: python examples/plain_wsgi.py 8001

or under gunicorn, as in production (``examples/gunicorn.conf.py`` says why gthread)::

    gunicorn -c examples/gunicorn.conf.py examples.plain_wsgi:application

Then ``curl -N http://127.0.0.1:8000/ops/deploy`` prints the lines one by one,
half a second apart, as the pretend deploy logs them::

    -- Deploy: started 2025-01-01 12:00:00 --
    2025-01-01 12:00:00,187 INFO    deploy: deploying release 42 to 3 hosts
    2025-01-01 12:00:00,687 INFO    deploy: web-1: release unpacked
    2025-01-01 12:00:01,187 INFO    deploy: web-1: service restarted
    -- progress 1/3 (33%) --
    ...
    -- progress 3/3 (100%) --
    2025-01-01 12:00:03,190 INFO    deploy: release 42 is live on 3 hosts
    -- ok (after 3.00s: 8 lines, 0 dropped) --

``/`` is an ordinary page (the middleware hands it to the site untouched) with
links to the same operation as a live HTML page, NDJSON and Server-Sent Events,
and ``/watch`` is a page of the site that follows ``/events/deploy`` with
``EventSource``. ``?hosts=N&delay=S`` change the pretend deploy's size and pace.
"""

from __future__ import annotations

import html
import logging
import sys
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any, Iterable
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIServer, make_server

from wsgi_logstream import LogStreamMiddleware, progress, wait_cancelled

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

log = logging.getLogger("deploy")


def deploy(environ: dict[str, Any]) -> None:
    """Pretend to deploy a release to ``?hosts=`` hosts (3), ``?delay=`` seconds (0.5) a step."""
    query = parse_qs(environ.get("QUERY_STRING", ""))
    hosts = max(1, min(int(query.get("hosts", ["3"])[0]), 50))
    delay = max(0.0, min(float(query.get("delay", ["0.5"])[0]), 60.0))
    log.info("deploying release 42 to %d hosts", hosts)
    for number in range(1, hosts + 1):
        for step in ("release unpacked", "service restarted"):
            # wait_cancelled() returns early, True, when the reader went away
            # (on_disconnect="cancel" below): a closed tab stops the deploy.
            if wait_cancelled(delay):
                log.warning("web-%d: cancelled before %s", number, step)
                return
            log.info("web-%d: %s", number, step)
        progress(number, hosts)
    log.info("release 42 is live on %d hosts", hosts)


_WATCH = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Watch a deploy</title></head>
<body><h1>Deploy</h1><ol id="lines"></ol><p id="status">running</p>
<script>
const source = new EventSource("events/deploy" + location.search);
source.onmessage = (event) => {
  const item = document.createElement("li");
  item.textContent = event.data;
  document.getElementById("lines").append(item);
};
source.addEventListener("end", (event) => {
  document.getElementById("status").textContent = JSON.parse(event.data).status;
  source.close();  // optional: the library answers a reconnect with 204, which stops EventSource too
});
</script></body></html>
"""


def site(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The rest of the site: an index page, the EventSource page and a 404."""
    path = environ.get("PATH_INFO", "/")
    if path == "/":
        links = "".join(
            f'<li><a href="ops/deploy?format={name}">{name}</a>: {html.escape(text)}</li>'
            for name, text in (
                ("html", "a live page"),
                ("text", "plain text"),
                ("ndjson", "JSON lines"),
                ("sse", "Server-Sent Events"),
            )
        )
        body = (
            '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Example site</title></head>'
            f"<body><h1>Example site</h1><p>Run the pretend deploy:</p><ul>{links}</ul>"
            '<p>Or <a href="watch">watch it from a page of this site</a> with EventSource.</p></body></html>'
        ).encode()
        content_type = "text/html; charset=utf-8"
        status = "200 OK"
    elif path == "/watch":
        body, content_type, status = _WATCH.encode(), "text/html; charset=utf-8", "200 OK"
    else:
        body, content_type, status = b"not found\n", "text/plain; charset=utf-8", "404 Not Found"
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


# One operation, mounted twice: /ops/ for people and scripts (any format),
# /events/ for pages of the site that follow it with EventSource. The nginx
# example (examples/nginx.conf) has a location for each.
application = LogStreamMiddleware(
    site,
    {"/ops/deploy": deploy, "/events/deploy": deploy},
    title="Deploy",
    on_disconnect="cancel",
)


class ThreadingServer(ThreadingMixIn, WSGIServer):
    """wsgiref serves one request at a time; a stream needs a thread of its own."""

    daemon_threads = True


def main(argv: list[str]) -> None:
    port = int(argv[1]) if len(argv) > 1 else 8000
    with make_server("127.0.0.1", port, application, server_class=ThreadingServer) as server:
        print(f"serving on http://127.0.0.1:{port}/ (Ctrl-C to stop)", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main(sys.argv)
