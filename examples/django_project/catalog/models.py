"""A product, and ``catalog.run_reindex``: who may reindex search."""

from __future__ import annotations

from django.db import models


class Product(models.Model):
    name = models.CharField(max_length=200)
    indexed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        permissions = (("run_reindex", "Can run the search reindex"),)

    def __str__(self) -> str:
        return self.name
