"""An ordinary Django view that links to the stream."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse


def index(request: HttpRequest) -> HttpResponse:
    return HttpResponse(
        "<!doctype html><title>Catalogue admin</title><h1>Catalogue admin</h1>"
        '<p><a href="/ops/reindex?format=html">Reindex search</a> and watch it happen.</p>'
    )
