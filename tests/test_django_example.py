"""The Django integration under gunicorn, logged in through Django's real login form.

The project is the example's, with the test streams of
:mod:`tests.apps.django_site` beside its own (``tests.apps.django_settings``),
its database made before gunicorn starts. ``/t/runs/<key>`` tells how often a
target ran, so "nothing runs" is read from the server itself; a stream is
proven live by reading ``first <key>`` before ``/t/release/<key>`` lets the
target go on. The last test runs the example exactly as its docstring says.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Iterator

import pytest

from tests.apps.http_session import Session, hidden_field
from tests.nginx import assert_ended_ok, django_example
from tests.servers import Program

pytestmark = pytest.mark.servers
_keys = itertools.count()


def key() -> str:
    return f"dg{next(_keys)}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Program]:
    env = {
        "EXAMPLE_DJANGO_DB": str(tmp_path_factory.mktemp("django") / "db.sqlite3"),
        "DJANGO_SETTINGS_MODULE": "tests.apps.django_settings",
    }
    with django_example(env) as program:
        yield program


def login(url: str, user: str) -> Session:
    """Log in through the login form, as a person does: its CSRF cookie and field, then the session cookie."""
    session = Session(url)
    page = session.get("/accounts/login/")
    assert page.status == 200
    reply = session.post(
        "/accounts/login/",
        {"username": user, "password": "pw", "csrfmiddlewaretoken": hidden_field(page.body, "csrfmiddlewaretoken")},
    )
    assert reply.status == 302 and reply.headers["location"] == "/", reply.text[:300]
    assert "sessionid" in session.cookies
    return session


def test_anonymous_is_sent_to_the_login_page_and_nothing_runs_under_gunicorn(server: Program) -> None:
    k = key()
    anonymous = Session(server.url)
    reply = anonymous.get(f"/t/stream/?key={k}")
    assert reply.status == 302 and reply.headers["location"].startswith("/accounts/login/?next=")
    assert anonymous.get("/t/jobs/").status == 302
    assert anonymous.post(f"/t/jobs/?key={k}").status == 403  # CSRF comes before the login check
    assert anonymous.runs(k) == 0


def test_a_user_without_the_permission_gets_403_and_nothing_runs_under_gunicorn(server: Program) -> None:
    k = key()
    carol = login(server.url, "carol")
    assert carol.get(f"/t/stream/?key={k}").status == 403
    token = hidden_field(carol.get("/t/jobs/").body, "csrfmiddlewaretoken")
    reply = carol.post(f"/t/jobs/?key={k}", {"csrfmiddlewaretoken": token})
    assert reply.status == 403 and reply.text == "not allowed to start here\n"
    assert carol.runs(k) == 0


def test_a_user_with_the_permission_sees_the_stream_live_through_gzip_under_gunicorn(server: Program) -> None:
    k = key()
    bob = login(server.url, "bob")
    with bob.stream(f"/t/stream/?key={k}", headers={"Accept-Encoding": "gzip"}) as client:
        client.read_until(f"first {k}".encode(), timeout=15)
        assert f"second {k}".encode() not in client.body
        assert client.status == 200
        assert client.headers["content-encoding"] == ""  # GZipMiddleware (installed) left it alone
        assert client.headers["x-accel-buffering"] == "no"
        assert bob.get(f"/t/release/{k}").status == 200
        body = client.read_to_end()
    assert f"second {k}".encode() in body
    assert_ended_ok("text", body)
    assert bob.runs(k) == 1


def test_a_post_without_the_csrf_token_is_refused_under_gunicorn(server: Program) -> None:
    k = key()
    bob = login(server.url, "bob")
    reply = bob.post(f"/t/jobs/?key={k}", {"note": "no token"})
    assert reply.status == 403 and "CSRF" in reply.text
    assert bob.runs(k) == 0
    job = bob.start_job(k, "csrfmiddlewaretoken")
    assert bob.post(f"{job}/cancel").status == 403  # the cancel needs the token too
    token = hidden_field(bob.get("/t/jobs/").body, "csrfmiddlewaretoken")
    assert bob.post(f"{job}/cancel", {"csrfmiddlewaretoken": token}).status == 303
    with bob.stream(f"{job}?format=ndjson") as client:
        assert b'"status":"cancelled"' in client.read_to_end()


def test_each_user_sees_only_their_own_jobs_and_staff_all_under_gunicorn(server: Program) -> None:
    bob, ada, carol = (login(server.url, name) for name in ("bob", "ada", "carol"))
    bobs, adas = key(), key()
    bob_job = bob.start_job(bobs, "csrfmiddlewaretoken").rsplit("/", 1)[1]
    ada_job = ada.start_job(adas, "csrfmiddlewaretoken").rsplit("/", 1)[1]
    for k in (bobs, adas):
        bob.get(f"/t/release/{k}")

    def listed(session: Session) -> set[str]:
        return {job["id"] for job in json.loads(session.get("/t/jobs/", {"Accept": "application/json"}).body)["jobs"]}

    assert bob_job in listed(bob) and ada_job not in listed(bob)
    assert {bob_job, ada_job} <= listed(ada)
    assert not {bob_job, ada_job} & listed(carol)
    assert carol.get(f"/t/jobs/{bob_job}").status == 403
    assert ada.get(f"/t/jobs/{bob_job}?format=text").status == 200


def test_the_admin_action_starts_a_job_and_redirects_to_it_under_gunicorn(server: Program) -> None:
    ada = login(server.url, "ada")
    page = ada.get("/admin/catalog/product/")
    assert page.status == 200 and "start_reindex_search_job" in page.text
    pks = {name: pk for pk, name in re.findall(r'href="/admin/catalog/product/(\d+)/change/">(desk \d)<', page.text)}
    assert set(pks) == {"desk 1", "desk 2", "desk 3"}, page.text[-2000:]
    reply = ada.post(
        "/admin/catalog/product/",
        {
            "action": "start_reindex_search_job",
            "_selected_action": [pks["desk 1"], pks["desk 3"]],
            "index": "0",
            "csrfmiddlewaretoken": hidden_field(page.body, "csrfmiddlewaretoken"),
        },
    )
    assert reply.status == 302, reply.text[:500]
    job = reply.headers["location"]
    assert re.fullmatch(r"/ops/jobs/[A-Za-z0-9_-]+", job)
    with ada.stream(f"{job}?format=text") as client:
        body = client.read_to_end()
    assert b"reindexing 2 selected products" in body
    assert b"indexed desk 1" in body and b"indexed desk 3" in body and b"desk 2" not in body
    assert_ended_ok("text", body)


@pytest.mark.parametrize("fmt", ["text", "html", "sse", "ndjson"])
def test_each_format_ends_ok_through_django_under_gunicorn(server: Program, fmt: str) -> None:
    k = key()
    bob = login(server.url, "bob")
    bob.get(f"/t/release/{k}")
    with bob.stream(f"/t/stream/?key={k}&format={fmt}", headers={"Accept-Encoding": "gzip"}) as client:
        body = client.read_to_end()
    assert client.status == 200
    assert client.headers["cache-control"] == "no-store"
    assert client.headers["x-content-type-options"] == "nosniff"
    assert "content-length" not in client.headers
    assert f"second {k}".encode() in body
    assert_ended_ok(fmt, body)


def test_head_and_405_through_django_under_gunicorn(server: Program) -> None:
    k = key()
    bob = login(server.url, "bob")
    reply = bob.request("HEAD", f"/t/stream/?key={k}&format=sse")
    assert reply.status == 200 and reply.headers["content-type"] == "text/event-stream" and reply.body == b""
    token = hidden_field(bob.get("/t/jobs/").body, "csrfmiddlewaretoken")
    reply = bob.request("PUT", f"/t/stream/?key={k}", headers={"X-CSRFToken": token})
    assert reply.status == 405 and reply.headers["allow"] == "GET, HEAD, POST"
    assert bob.runs(k) == 0


def test_the_example_runs_as_its_docstring_says(tmp_path: Path) -> None:
    env = {"EXAMPLE_DJANGO_DB": str(tmp_path / "db.sqlite3"), "DJANGO_SUPERUSER_PASSWORD": "pw"}
    settings = ["--settings", "examples.django_project.settings"]
    migrate = ["-m", "django", "migrate", "--verbosity", "0", *settings]
    superuser = ["-m", "django", "createsuperuser", "--noinput", "--username", "ada", "--email", "a@x.test"]
    with django_example(env, setup=(migrate, [*superuser, *settings])) as program:
        assert Session(program.url).get("/ops/reindex/").status == 302
        ada = login(program.url, "ada")
        assert "Catalogue admin" in ada.get("/").text
        assert ada.get("/no-such-page").status == 404
        # Live: the first batch's line arrives while the reindex waits 30 s for the next.
        with ada.stream("/ops/reindex/?batches=1&delay=30", headers={"Accept-Encoding": "gzip"}) as client:
            client.read_until(b"reindexing 1 batches of 250 products", timeout=15)
            assert b"-- ok" not in client.body
        for fmt in ("text", "html", "sse", "ndjson"):
            with ada.stream(f"/ops/reindex/?batches=2&delay=0&format={fmt}") as client:
                body = client.read_to_end()
            assert b"search index is up to date" in body
            assert_ended_ok(fmt, body)
        token = hidden_field(ada.get("/ops/jobs/").body, "csrfmiddlewaretoken")
        reply = ada.post("/ops/jobs/?batches=2&delay=0", {"csrfmiddlewaretoken": token})
        assert reply.status == 303
        with ada.stream(reply.headers["location"] + "?format=sse") as client:
            body = client.read_to_end()
        assert_ended_ok("sse", body)
