"""The project's own pages; the stream is mounted in ``wsgi.py``, outside Django."""

from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [path("", views.index)]
