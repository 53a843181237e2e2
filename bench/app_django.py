"""Contender: the recipe as a Django view returning a ``StreamingHttpResponse``.

Django is configured in code (no project, no database): one URL, no
middleware, the host's logging left alone (``LOGGING_CONFIG=None``).
"""

from __future__ import annotations

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="bench-only-not-secret",
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
    LOGGING_CONFIG=None,
    USE_TZ=True,
)
django.setup()

import recipe  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpRequest, StreamingHttpResponse  # noqa: E402
from django.urls import path  # noqa: E402


def stream_view(request: HttpRequest) -> StreamingHttpResponse:
    response = StreamingHttpResponse(recipe.stream(recipe.run_params(request.META)), content_type="text/plain")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


urlpatterns = [path("", stream_view)]

application = get_wsgi_application()
