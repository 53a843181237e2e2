"""Contender: ``wsgi_logstream.logstream`` running the workload, as shipped (default options).

``gunicorn --pythonpath bench app_logstream:application``; the format comes
from the query string (``?format=text`` or ``?format=sse``). With
``BENCH_GC_THRESHOLD=a,b,c`` in the environment it calls ``gc.set_threshold``.
"""

from __future__ import annotations

import gc
import logging
import os
from typing import Any

import workload

from wsgi_logstream import logstream

log = logging.getLogger(workload.LOGGER)


def operation(environ: dict[str, Any]) -> None:
    workload.run(log, workload.params(environ))


application = logstream(operation)

if os.environ.get("BENCH_GC_THRESHOLD"):
    # A deployment's choice, not the library's (see "Scale" in docs/benchmarks.md): young objects are
    # collected less often, so fewer are promoted, and full collections over every stream's objects are rarer.
    gc.set_threshold(*(int(n) for n in os.environ["BENCH_GC_THRESHOLD"].split(",")))
