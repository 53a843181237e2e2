"""The WSGI entry point: Django's application with the reindex stream mounted around it.

``gunicorn -c examples/gunicorn.conf.py examples.django_project.wsgi:application``
"""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

from wsgi_logstream import LogStreamMiddleware

from .operations import reindex

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_project.settings")

# Outermost, around Django: a stream request never enters Django (its middleware
# cannot buffer or compress it); every other request is Django's, untouched.
application = LogStreamMiddleware(
    get_wsgi_application(),
    {"/ops/reindex": reindex},
    title="Reindex search",
    on_disconnect="cancel",
)
