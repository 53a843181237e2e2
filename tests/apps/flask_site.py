"""The Flask example app, with test streams beside its own (``gunicorn tests.apps.flask_site:app``).

The test routes serve :mod:`tests.apps.gates`' target, which waits for the
test: ``/t/stream/`` (Flask-Login's ``login_required`` and the example's
``before_request`` permission check), ``/t/busy/`` (``max_concurrent=1``),
``/t/jobs/`` (the example's ``owner_or_admin`` hook). ``/t/release/<key>``
releases a target and ``/t/runs/<key>`` tells how often ``key`` ran, for a
test that talks to a server process.
"""

from __future__ import annotations

from flask_login import login_required

from examples.flask_app import app, may_rebuild, owner_or_admin
from tests.apps.gates import gated, release, runs
from wsgi_logstream import jobs, logstream
from wsgi_logstream.flask import blueprint, jobs_options

__all__ = ["app", "busy", "gated_jobs", "stream"]

stream = logstream(gated, heartbeat=0.5, formatter="%(message)s", on_disconnect="cancel")
busy = logstream(gated, heartbeat=0.5, formatter="%(message)s", max_concurrent=1)
gated_jobs = jobs(gated, heartbeat=0.5, formatter="%(message)s", **jobs_options(owner_or_admin))

stream_routes = blueprint(stream, "t_stream", decorators=[login_required])
stream_routes.before_request(may_rebuild)
app.register_blueprint(stream_routes, url_prefix="/t/stream")
app.register_blueprint(blueprint(busy, "t_busy"), url_prefix="/t/busy")
app.register_blueprint(blueprint(gated_jobs, "t_jobs", decorators=[login_required]), url_prefix="/t/jobs")


@app.get("/t/release/<key>")
def release_view(key: str) -> str:
    release(key)
    return "released\n"


@app.get("/t/runs/<key>")
def runs_view(key: str) -> str:
    return str(runs[key])
