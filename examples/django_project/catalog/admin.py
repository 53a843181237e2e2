"""The products' admin, with an action that reindexes the selected ones as a job and shows its log."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from wsgi_logstream.django import admin_action

from ..ops import reindex_jobs
from .models import Product


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("name", "indexed_at")
    actions = (
        admin_action(
            reindex_jobs, at="reindex-jobs", description="Reindex the selected products", permissions=["reindex"]
        ),
    )

    def has_reindex_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Only people with ``catalog.run_reindex`` see the action."""
        return bool(request.user.has_perm("catalog.run_reindex"))
