"""A Flask app whose cache rebuild streams its log to the browser, behind Flask-Login and Flask-WTF's CSRF.

Run it with Flask's development server::

    python examples/flask_app.py            # http://127.0.0.1:5000/ (or: python examples/flask_app.py 5001)

or under gunicorn, as in production::

    gunicorn -c examples/gunicorn.conf.py examples.flask_app:app

Log in at http://127.0.0.1:5000/login as ``ada`` (an admin), ``bob`` (may
rebuild) or ``carol`` (may not), password ``$EXAMPLE_PASSWORD`` (``pw`` if
unset: these are example users), then:

- http://127.0.0.1:5000/ops/rebuild-cache/?format=html rebuilds the cache and
  streams its log (``login_required`` on the blueprint's view, and its
  ``before_request`` refuses people who may not rebuild with ``403``;
  anonymous is sent to the login page, and nothing runs);
- http://127.0.0.1:5000/ops/jobs/ lists the rebuilds you may see (admins: all)
  and starts one; the form carries Flask-WTF's ``csrf_token``, without which
  ``CSRFProtect`` refuses the ``POST``.

With a session cookie, ``curl -N -b 'session=...' http://127.0.0.1:5000/ops/rebuild-cache/``
prints each line as the rebuild logs it, ending with the summary::

    -- Rebuild the cache: started 2025-01-01 12:00:00 --
    2025-01-01 12:00:00,209 INFO    shop.cache: rebuilding 5 sections of the cache
    2025-01-01 12:00:00,509 INFO    shop.cache: section 1/5 rebuilt (cache-v1)
    ...
    2025-01-01 12:00:01,711 INFO    shop.cache: cache cache-v1 is warm
    -- ok (after 1.50s: 7 lines, 0 dropped) --

The streams are Flask routes (``wsgi_logstream.flask.blueprint``), so Flask's
request handling, ``before_request`` and Flask-Login run for them. The
operation runs in a thread of its own, so it opens an app context itself
when it needs ``current_app``.
"""

from __future__ import annotations

import hmac
import logging
import os
import sys
from typing import Any
from urllib.parse import parse_qs

from flask import Flask, abort, current_app, redirect, render_template_string, request, url_for
from flask_login import LoginManager, UserMixin, current_user, login_required, login_user, logout_user
from flask_wtf.csrf import CSRFProtect

from wsgi_logstream import jobs, logstream, wait_cancelled
from wsgi_logstream.flask import blueprint, jobs_options
from wsgi_logstream.record import JobRecord

app = Flask(__name__)
app.config["SECRET_KEY"] = os.environ.get("FLASK_SECRET_KEY", "example-only-not-a-secret")
app.config["CACHE_VERSION"] = "cache-v1"
CSRFProtect(app)
login_manager = LoginManager(app)
login_manager.login_view = "login"
log = logging.getLogger("shop.cache")


class User(UserMixin):  # type: ignore[misc]
    def __init__(self, name: str, *, admin: bool, may_rebuild: bool) -> None:
        self.id = name
        self.is_admin = admin
        self.may_rebuild = may_rebuild


USERS = {
    "ada": User("ada", admin=True, may_rebuild=True),
    "bob": User("bob", admin=False, may_rebuild=True),
    "carol": User("carol", admin=False, may_rebuild=False),
}
PASSWORD = os.environ.get("EXAMPLE_PASSWORD", "pw")


@login_manager.user_loader  # type: ignore[misc]
def load_user(user_id: str) -> User | None:
    return USERS.get(user_id)


def rebuild_cache(environ: dict[str, Any]) -> None:
    """Pretend to rebuild ``?sections=`` (5) sections, ``?delay=`` (0.3) seconds each."""
    query = parse_qs(environ.get("QUERY_STRING", ""))
    sections = max(1, min(int(query.get("sections", ["5"])[0]), 100))
    delay = max(0.0, min(float(query.get("delay", ["0.3"])[0]), 60.0))
    with app.app_context():
        version = current_app.config["CACHE_VERSION"]
        log.info("rebuilding %d sections of the cache", sections)
        for number in range(1, sections + 1):
            if wait_cancelled(delay):
                log.warning("cancelled after %d sections", number - 1)
                return
            log.info("section %d/%d rebuilt (%s)", number, sections, version)
        log.info("cache %s is warm", version)


def owner_or_admin(action: str, job: JobRecord | None) -> bool:
    """Start: who may rebuild. List: anyone logged in. View, cancel: the job's owner, or an admin."""
    if action == "start":
        return bool(current_user.may_rebuild)
    return job is None or bool(current_user.is_admin) or job.owner == current_user.get_id()


rebuild_stream = logstream(rebuild_cache, title="Rebuild the cache", on_disconnect="cancel")
rebuild_jobs = jobs(rebuild_cache, title="Rebuild the cache", max_concurrent=4, **jobs_options(owner_or_admin))

# A plain stream: every request runs the rebuild. Flask-Login first, then who may.
stream_routes = blueprint(rebuild_stream, "rebuild_cache", decorators=[login_required])


@stream_routes.before_request
def may_rebuild() -> None:
    if current_user.is_authenticated and not current_user.may_rebuild:
        abort(403)


app.register_blueprint(stream_routes, url_prefix="/ops/rebuild-cache")
# Jobs: POST starts one (with the CSRF token), each has its own page; owner_or_admin says who sees which.
app.register_blueprint(blueprint(rebuild_jobs, "rebuild_jobs", decorators=[login_required]), url_prefix="/ops/jobs")

LOGIN = """<!doctype html><title>Log in</title><h1>Log in</h1>
{% if error %}<p class="error">{{ error }}</p>{% endif %}
<form method="post"><input type="hidden" name="csrf_token" value="{{ csrf_token() }}">
<input type="hidden" name="next" value="{{ next }}">
<p><label>Username <input name="username" id="username" autofocus></label></p>
<p><label>Password <input name="password" id="password" type="password"></label></p>
<p><button type="submit" id="login">Log in</button></p></form>"""

INDEX = """<!doctype html><title>Shop admin</title><h1>Shop admin</h1>
<p>Logged in as {{ current_user.id }}.</p>
<p><a href="/ops/rebuild-cache/?format=html">Rebuild the cache</a> and watch it happen, or
<a href="/ops/jobs/">start a rebuild as a job</a> you can leave and come back to.</p>
<ul>{% for job in jobs %}<li><a href="/ops/jobs/{{ job.id }}">{{ job.id }}</a> {{ job.status }}
{% if not job.finished %}<form method="post" action="/ops/jobs/{{ job.id }}/cancel" style="display:inline">
<input type="hidden" name="csrf_token" value="{{ csrf_token() }}"><button class="cancel">Cancel</button></form>
{% endif %}</li>{% else %}<li>No jobs yet.</li>{% endfor %}</ul>
<form method="post" action="/logout"><input type="hidden" name="csrf_token" value="{{ csrf_token() }}">
<button>Log out</button></form>"""


@app.route("/login", methods=["GET", "POST"])
def login() -> Any:
    target = request.values.get("next") or "/"
    if not target.startswith("/") or target.startswith("//"):
        target = "/"
    if request.method == "POST":
        user = USERS.get(request.form.get("username", ""))
        password = request.form.get("password", "").encode()
        if user is not None and hmac.compare_digest(password, PASSWORD.encode()):
            login_user(user)
            return redirect(target)
        return render_template_string(LOGIN, error="Unknown user or wrong password.", next=target), 401
    return render_template_string(LOGIN, error=None, next=target)


@app.post("/logout")
def logout() -> Any:
    logout_user()
    return redirect(url_for("login"))


@app.get("/")
@login_required  # type: ignore[misc]
def index() -> str:
    visible = [job for job in rebuild_jobs.records() if owner_or_admin("view", job)]
    return render_template_string(INDEX, jobs=visible)


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[1]) if len(sys.argv) > 1 else 5000, threaded=True)
