"""The project's index: links to the reindex, and the viewer's own jobs with a cancel button each."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from .ops import owner_and_staff, reindex_jobs


@login_required
def index(request: HttpRequest) -> HttpResponse:
    visible = [job for job in reindex_jobs.records() if owner_and_staff(request, "view", job)]
    return render(request, "index.html", {"jobs": visible})
