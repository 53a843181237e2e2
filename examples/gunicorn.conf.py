"""gunicorn settings for a site that streams logs with wsgi_logstream: gthread workers.

Run from the repository's root::

    gunicorn -c examples/gunicorn.conf.py examples.plain_wsgi:application

and ``curl -N http://127.0.0.1:8000/ops/deploy`` shows the deploy's lines one
by one. Put nginx in front with ``examples/nginx.conf``.

Why not the default ``sync`` worker: a sync worker serves one request at a
time and tells the master it is alive only between requests. A stream is one
long request, so after ``timeout`` seconds the master decides the worker is
stuck, kills it, and the browser sees the log stop mid-way with no end summary
(``tests/test_deploy_gunicorn.py`` shows it). Raising ``timeout`` to hours
would only hide real hangs, and one stream would still block every other
request of that worker. gthread's main loop keeps telling the master it is
alive while its threads stream, so ``timeout`` keeps its meaning.
"""

import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")  # loopback: nginx is the only client
worker_class = "gthread"
workers = 2  # processes; streams live in one of them, so operations are per process
# Each open stream holds one thread of this pool for its whole life (the
# operation itself runs in a thread of its own, outside the pool). Size it for
# the streams you expect at once plus your ordinary traffic; set the library's
# max_concurrent below it so a burst of streams gets 503 instead of a queue.
threads = 32
# gthread: how long the worker may go without telling the master it is alive.
# Its main loop does so while threads stream, so this is NOT a limit on a
# stream's length; keep the default-ish value that catches a truly hung worker.
timeout = 30
# On reload or stop, a worker finishes its open requests for this long, then is
# killed. Streams longer than this are cut (the client sees no end summary); a
# page reconnects, an EventSource gets 204 and stops. Long enough for typical
# operations, short enough that deploys do not hang.
graceful_timeout = 60
# nginx keeps idle upstream connections for 60 s (its keepalive_timeout in the
# upstream block): gunicorn must keep them longer, or it may close one just as
# nginx reuses it.
keepalive = 75
