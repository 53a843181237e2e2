"""The Flask integration under gunicorn and as the example's docstring says, logged in through its login form.

``tests.apps.flask_site:app`` is the example app with the test streams
beside its own; ``/t/runs/<key>`` tells how often a target ran, so "nothing
runs" is read from the server itself, and a stream is proven live by reading
``first <key>`` before ``/t/release/<key>`` lets the target go on.
"""

from __future__ import annotations

import itertools
import json
import sys
from typing import Iterator

import pytest

from tests.apps.http_session import Session, hidden_field
from tests.nginx import EXAMPLES, assert_ended_ok, gunicorn_with
from tests.servers import Program, free_port

pytestmark = pytest.mark.servers
_keys = itertools.count()


def key() -> str:
    return f"fg{next(_keys)}"


@pytest.fixture(scope="module")
def server() -> Iterator[Program]:
    with gunicorn_with("gunicorn.conf.py", "tests.apps.flask_site:app", "--graceful-timeout", "1") as program:
        yield program


def login(url: str, user: str) -> Session:
    session = Session(url)
    page = session.get("/login")
    reply = session.post(
        "/login", {"username": user, "password": "pw", "csrf_token": hidden_field(page.body, "csrf_token")}
    )
    assert reply.status == 302 and reply.headers["location"] == "/", reply.text[:300]
    assert "session" in session.cookies
    return session


def test_anonymous_is_sent_to_the_login_page_and_nothing_runs_under_gunicorn(server: Program) -> None:
    k = key()
    anonymous = Session(server.url)
    reply = anonymous.get(f"/t/stream/?key={k}")
    assert reply.status == 302 and reply.headers["location"].startswith("/login?next=")
    assert anonymous.post(f"/t/jobs/?key={k}").status == 400  # CSRFProtect comes first
    assert anonymous.runs(k) == 0


def test_a_user_without_the_permission_gets_403_and_nothing_runs_under_gunicorn(server: Program) -> None:
    k = key()
    carol = login(server.url, "carol")
    assert carol.get(f"/t/stream/?key={k}").status == 403
    token = hidden_field(carol.get("/t/jobs/").body, "csrf_token")
    assert carol.post(f"/t/jobs/?key={k}", {"csrf_token": token}).status == 403
    assert carol.runs(k) == 0


def test_a_user_with_the_permission_sees_the_stream_live_under_gunicorn(server: Program) -> None:
    k = key()
    bob = login(server.url, "bob")
    with bob.stream(f"/t/stream/?key={k}", headers={"Accept-Encoding": "gzip"}) as client:
        client.read_until(f"first {k}".encode(), timeout=15)
        assert f"second {k}".encode() not in client.body
        assert client.headers["x-accel-buffering"] == "no"
        assert bob.get(f"/t/release/{k}").status == 200
        body = client.read_to_end()
    assert_ended_ok("text", body)
    assert bob.runs(k) == 1


def test_a_post_without_the_csrf_token_is_refused_and_each_sees_their_own_jobs_under_gunicorn(
    server: Program,
) -> None:
    bob, ada, carol = (login(server.url, name) for name in ("bob", "ada", "carol"))
    k = key()
    assert bob.post(f"/t/jobs/?key={k}", {"note": "no token"}).status == 400
    assert bob.runs(k) == 0
    bob_job = bob.start_job(k, "csrf_token")
    adas = key()
    ada_job = ada.start_job(adas, "csrf_token")
    token = hidden_field(bob.get("/t/jobs/").body, "csrf_token")
    assert bob.post(f"{bob_job}/cancel").status == 400
    assert bob.post(f"{bob_job}/cancel", {"csrf_token": token}).status == 303
    ada.get(f"/t/release/{adas}")

    def listed(session: Session) -> set[str]:
        answer = session.get("/t/jobs/", {"Accept": "application/json"})
        return {"/t/jobs/" + job["id"] for job in json.loads(answer.body)["jobs"]}

    assert bob_job in listed(bob) and ada_job not in listed(bob)
    assert {bob_job, ada_job} <= listed(ada)
    assert not {bob_job, ada_job} & listed(carol)
    with bob.stream(f"{bob_job}?format=ndjson") as client:
        assert b'"status":"cancelled"' in client.read_to_end()


@pytest.mark.parametrize("fmt", ["text", "html", "sse", "ndjson"])
def test_each_format_ends_ok_through_flask_under_gunicorn(server: Program, fmt: str) -> None:
    k = key()
    bob = login(server.url, "bob")
    bob.get(f"/t/release/{k}")
    with bob.stream(f"/t/stream/?key={k}&format={fmt}") as client:
        body = client.read_to_end()
    assert client.headers["cache-control"] == "no-store" and "content-length" not in client.headers
    assert_ended_ok(fmt, body)


def _check_example(url: str) -> None:
    assert Session(url).get("/ops/rebuild-cache/").status == 302
    ada = login(url, "ada")
    assert "Shop admin" in ada.get("/").text
    assert ada.get("/no-such-page").status == 404
    # Live: the first section's line arrives while the rebuild waits 30 s for the next.
    with ada.stream("/ops/rebuild-cache/?sections=1&delay=30") as client:
        client.read_until(b"rebuilding 1 sections of the cache", timeout=15)
        assert b"-- ok" not in client.body
    for fmt in ("text", "html", "sse", "ndjson"):
        with ada.stream(f"/ops/rebuild-cache/?sections=2&delay=0&format={fmt}") as client:
            body = client.read_to_end()
        assert b"cache cache-v1 is warm" in body
        assert_ended_ok(fmt, body)
    token = hidden_field(ada.get("/ops/jobs/").body, "csrf_token")
    reply = ada.post("/ops/jobs/?sections=2&delay=0", {"csrf_token": token})
    assert reply.status == 303
    with ada.stream(reply.headers["location"] + "?format=sse") as client:
        assert_ended_ok("sse", client.read_to_end())


def test_the_example_runs_under_gunicorn() -> None:
    with gunicorn_with("gunicorn.conf.py", "examples.flask_app:app", "--graceful-timeout", "1") as program:
        _check_example(program.url)


def test_the_example_runs_as_its_docstring_says() -> None:
    port = free_port()
    with Program([sys.executable, str(EXAMPLES / "flask_app.py"), str(port)], port) as program:
        _check_example(program.url)
