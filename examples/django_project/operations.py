"""The long operation: a pretend search reindex that logs each batch."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs

from django.conf import settings

from wsgi_logstream import progress, wait_cancelled

log = logging.getLogger("search.reindex")


def reindex(environ: dict[str, Any]) -> None:
    """Reindex ``?batches=`` (4) batches, ``?delay=`` (0.25) seconds each."""
    query = parse_qs(environ.get("QUERY_STRING", ""))
    batches = max(1, min(int(query.get("batches", ["4"])[0]), 1000))
    delay = max(0.0, min(float(query.get("delay", ["0.25"])[0]), 60.0))
    size = settings.SEARCH_BATCH_SIZE
    log.info("reindexing %d batches of %d products", batches, size)
    for number in range(1, batches + 1):
        if wait_cancelled(delay):
            log.warning("cancelled after %d batches", number - 1)
            return
        log.info("batch %d/%d: %d products indexed", number, batches, size)
        progress(number, batches)
    log.info("search index is up to date")
