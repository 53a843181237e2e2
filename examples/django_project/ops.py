"""The reindex, served two ways: a plain stream per request, and jobs people can leave and come back to.

Who may do what is Django's: the URL patterns ask for a login (and, for the
plain stream, the ``catalog.run_reindex`` permission); the jobs' hook below
lets people with the permission start a reindex, and each person see and
cancel their own jobs (staff: everyone's).
"""

from __future__ import annotations

from django.http import HttpRequest

from wsgi_logstream import jobs, logstream
from wsgi_logstream.django import jobs_options
from wsgi_logstream.record import JobRecord

from .operations import reindex


def owner_and_staff(request: HttpRequest, action: str, job: JobRecord | None) -> bool:
    """Start: with the permission. List: anyone logged in. View, cancel: the job's owner, or staff."""
    user = request.user
    if action == "start":
        return bool(user.has_perm("catalog.run_reindex"))
    return job is None or bool(user.is_staff) or job.owner == user.get_username()


reindex_stream = logstream(reindex, title="Reindex search", on_disconnect="cancel")
reindex_jobs = jobs(reindex, title="Reindex search", max_concurrent=4, **jobs_options(authorize=owner_and_staff))
