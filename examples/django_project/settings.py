"""Settings for the example project: no database, no apps, just enough to serve a page."""

from __future__ import annotations

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-a-secret")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "examples.django_project.urls"
WSGI_APPLICATION = "examples.django_project.wsgi.application"
INSTALLED_APPS: list[str] = []
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
# Django sets the process's TZ from this (default America/Chicago): stream timestamps follow it.
TIME_ZONE = "UTC"
SEARCH_BATCH_SIZE = 250
