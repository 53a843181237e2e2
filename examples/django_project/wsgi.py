"""The WSGI entry point: Django's application; the streams are Django URL patterns (``urls.py``).

``gunicorn -c examples/gunicorn.conf.py examples.django_project.wsgi:application``
"""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_project.settings")

application = get_wsgi_application()
