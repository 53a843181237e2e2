"""The long operation: a pretend search reindex that logs each batch, or each selected product."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs

from django.conf import settings
from django.utils import timezone

from wsgi_logstream import progress, wait_cancelled
from wsgi_logstream.django import selected, uses_db

log = logging.getLogger("search.reindex")


@uses_db
def reindex(environ: dict[str, Any]) -> None:
    """Reindex the products an admin action selected, else ``?batches=`` (4) batches; ``?delay=`` s each."""
    from .catalog.models import Product  # models load once Django is set up

    query = parse_qs(environ.get("QUERY_STRING", ""))
    delay = max(0.0, min(float(query.get("delay", [settings.SEARCH_REINDEX_DELAY])[0]), 60.0))
    ids = selected(environ)
    if ids:
        products = list(Product.objects.filter(pk__in=ids).order_by("pk"))
        log.info("reindexing %d selected products", len(products))
        for number, product in enumerate(products, 1):
            if wait_cancelled(delay):
                log.warning("cancelled after %d products", number - 1)
                return
            Product.objects.filter(pk=product.pk).update(indexed_at=timezone.now())
            log.info("indexed %s", product.name)
            progress(number, len(products))
        log.info("search index is up to date")
        return
    batches = max(1, min(int(query.get("batches", ["4"])[0]), 1000))
    size = settings.SEARCH_BATCH_SIZE
    log.info("reindexing %d batches of %d products", batches, size)
    for number in range(1, batches + 1):
        if wait_cancelled(delay):
            log.warning("cancelled after %d batches", number - 1)
            return
        log.info("batch %d/%d: %d products indexed", number, batches, size)
        progress(number, batches)
    log.info("search index is up to date")
