"""The Django example project, set up once per test process, with a test URLconf beside its own.

:func:`setup` points the example's settings at a SQLite file in a temp dir,
runs its migrations and makes three users (password ``pw``): ``ada`` (staff,
may reindex), ``bob`` (may reindex) and ``carol`` (may not). Django can be
set up only once per process, so every Django test module calls this.

The URLconf (``ROOT_URLCONF = "tests.apps.django_site"``, as
``tests.apps.django_settings`` sets it for a server) is the example's, plus
streams and jobs whose target waits for the test (:mod:`tests.apps.gates`). Under a server,
``/t/release/<key>`` releases and ``/t/runs/<key>`` tells how often ``K`` ran.

Run as a program (``python -m tests.apps.django_site``, with
``EXAMPLE_DJANGO_DB`` set) it makes that database and its users, for a server
started after it.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile

from tests.apps.gates import gated, release, runs
from wsgi_logstream import jobs, logstream

__all__ = ["gated", "release", "runs", "setup", "urlpatterns"]
_ready = False


def setup() -> None:
    """Set Django up with the example's settings and a fresh database, once per process (a server's: never)."""
    global _ready
    from django.apps import apps

    if _ready or apps.ready:
        return
    # The settings read these once, when Django sets up; they are taken out of the
    # environment again after, so no later test's subprocess inherits them.
    added = {}
    if "EXAMPLE_DJANGO_DB" not in os.environ:
        directory = tempfile.mkdtemp(prefix="django-example-")
        atexit.register(shutil.rmtree, directory, True)
        added["EXAMPLE_DJANGO_DB"] = os.path.join(directory, "db.sqlite3")
    if "DJANGO_SETTINGS_MODULE" not in os.environ:
        added["DJANGO_SETTINGS_MODULE"] = "tests.apps.django_settings"
    os.environ.update(added)
    import django
    from django.core.management import call_command

    try:
        django.setup()
    finally:
        for name in added:
            del os.environ[name]
    call_command("migrate", verbosity=0)
    make_users()
    _ready = True


def make_users() -> None:
    from django.contrib.auth.models import Permission, User

    may = Permission.objects.get(codename="run_reindex")
    for name, staff, allowed in (("ada", True, True), ("bob", False, True), ("carol", False, False)):
        user = User.objects.create_user(name, password="pw", is_staff=staff)
        if allowed:
            user.user_permissions.add(may)
        if staff:
            # The admin's changelist needs the model's view permission.
            user.user_permissions.add(Permission.objects.get(codename="view_product"))


setup()

from django.contrib.auth.decorators import login_required, permission_required  # noqa: E402
from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.urls import include, path  # noqa: E402

from examples.django_project.ops import owner_and_staff  # noqa: E402
from examples.django_project.urls import urlpatterns as example_patterns  # noqa: E402
from wsgi_logstream.django import jobs_options, stream_view, urls  # noqa: E402

may_reindex = permission_required("catalog.run_reindex", raise_exception=True)
stream = logstream(gated, heartbeat=0.5, formatter="%(message)s", on_disconnect="cancel")
busy = logstream(gated, heartbeat=0.5, formatter="%(message)s", max_concurrent=1)
gated_jobs = jobs(gated, heartbeat=0.5, formatter="%(message)s", **jobs_options(authorize=owner_and_staff))


def once() -> None:
    logging.getLogger("tests.once").warning("logged once")


def release_view(request: HttpRequest, key: str) -> HttpResponse:
    release(key)
    return HttpResponse(b"released\n", content_type="text/plain")


def runs_view(request: HttpRequest, key: str) -> HttpResponse:
    return HttpResponse(str(runs[key]).encode(), content_type="text/plain")


urlpatterns = [
    *example_patterns,
    path("t/release/<str:key>", release_view),
    path("t/runs/<str:key>", runs_view),
    path("t/stream/", include(urls(stream, decorators=[login_required, may_reindex]))),
    path("t/busy/", include(urls(busy))),
    path("t/jobs/", include(urls(gated_jobs, decorators=[login_required], name="gated-jobs"))),
    # A view mounted at one URL: nothing below it is routed, its page's assets included.
    path("t/once/", stream_view(logstream(once, formatter="%(message)s"))),
]

if __name__ == "__main__":
    from django.conf import settings

    from examples.django_project.catalog.models import Product

    for number in (1, 2, 3):
        Product.objects.create(name=f"desk {number}")
    print("database ready:", settings.DATABASES["default"]["NAME"])
