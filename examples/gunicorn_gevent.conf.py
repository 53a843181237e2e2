"""gunicorn settings for thousands of concurrent streams: gevent workers.

Run from the repository's root::

    gunicorn -c examples/gunicorn_gevent.conf.py examples.plain_wsgi:application

and ``curl -N http://127.0.0.1:8000/ops/deploy`` shows the deploy's lines one
by one, as with gthread. Here a stream and its operation are greenlets (gevent
patches ``threading``), not OS threads: about 8 KiB of memory for both, as
measured by ``tests/test_deploy_nginx.py``, which keeps 500 streams open
through nginx to one worker that never has more than one OS thread.

The trap: greenlets take turns. An operation that computes without doing I/O
(or calls a C library gevent cannot patch) holds the whole worker, and every
stream in it stalls until it yields. For CPU-heavy operations use gthread
(``examples/gunicorn.conf.py``), or have the operation run the heavy part in a
subprocess and log its output.
"""

import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
worker_class = "gevent"
workers = 2
# Open connections (streams + ordinary requests) one worker accepts at once.
# Each needs a file descriptor, and nginx holds two per stream: raise
# `ulimit -n` (LimitNOFILE= in a systemd unit) and nginx's worker_rlimit_nofile.
worker_connections = 4000
timeout = 30  # the worker's heartbeat, as with gthread: not a limit on a stream's length
graceful_timeout = 60  # on reload or stop, open streams get this long, then are cut
keepalive = 75  # longer than nginx's upstream keepalive_timeout (60 s)


def post_fork(server, worker):
    # With thousands of streams a worker tracks about a million objects, and
    # CPython's full collections over them pause every stream for up to a
    # second (docs/benchmarks.md, the scale workload). Collecting less often
    # keeps each stream's lines within their second at 10,000 streams.
    import gc

    gc.set_threshold(50_000, 20, 10)
