"""The project's pages, Django's login and admin, and the reindex mounted as ordinary URL patterns."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.decorators import login_required, permission_required
from django.urls import include, path

from wsgi_logstream.django import urls

from . import views
from .ops import reindex_jobs, reindex_stream

may_reindex = permission_required("catalog.run_reindex", raise_exception=True)

urlpatterns = [
    path("", views.index, name="index"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    # A plain stream: every request runs the reindex (anonymous: to the login page; no permission: 403).
    path("ops/reindex/", include(urls(reindex_stream, decorators=[login_required, may_reindex]))),
    # Jobs: POST starts one, each has its own page; the hook in ops.py says who sees which.
    path("ops/jobs/", include(urls(reindex_jobs, decorators=[login_required], name="reindex-jobs"))),
]
