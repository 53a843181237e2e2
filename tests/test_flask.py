"""Streams and jobs inside Flask, with Flask's test client: Flask-Login, before_request, Flask-WTF's CSRF.

The app is the example's (``examples/flask_app.py``: Flask-Login,
``CSRFProtect``), with the test streams of :mod:`tests.apps.flask_site`
beside its own. A refused request is shown to have run nothing by the
target's run count; a stream is shown live by reading its first line while
the target waits for the test to release it.
"""

from __future__ import annotations

import itertools
import logging
import re
from typing import Any, Iterator
from urllib.parse import urljoin

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.apps import flask_site, gates
from tests.apps.gates import read_live
from tests.inproc import Chunks, TestApp, logging_snapshot
from tests.servers import wait_until
from tests.wire import FORMATS, MEDIA_TYPES, ndjson_objects, parse_html, records, summary
from wsgi_logstream import jobs, logstream
from wsgi_logstream.assets import HASHED_CACHE, load
from wsgi_logstream.flask import MOUNTED, hook, owner, stream_view

_keys = itertools.count()


@pytest.fixture(autouse=True)
def jobs_end() -> Iterator[None]:
    yield
    assert flask_site.gated_jobs.shutdown(10), "a job did not end when cancelled"


def key() -> str:
    return f"fl{next(_keys)}"


def token(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found is not None, page[:500]
    return found.group(1)


def client(user: str | None = None) -> FlaskClient:
    """A test client, logged in through the login form (its CSRF token, then the session cookie)."""
    made = flask_site.app.test_client()
    if user is not None:
        page = made.get("/login").text
        reply = made.post("/login", data={"username": user, "password": "pw", "csrf_token": token(page)})
        assert reply.status_code == 302, reply.text
    return made


def form_token(browser: FlaskClient, path: str = "/t/jobs/") -> str:
    return token(browser.get(path).text)


def streamed(response: Any) -> Chunks:
    """A streamed response read chunk by chunk, closed as a server closes it."""
    assert response.is_streamed, f"not streamed: {response.status} {response.data[:200]!r}"
    return Chunks(response.response, response.close)


def live(response: Any, k: str) -> bytes:
    """Read ``first k`` while the target waits, then release it and read to the end."""
    with streamed(response) as stream:
        return read_live(stream, k)


def start_job(browser: FlaskClient, k: str) -> str:
    reply = browser.post(f"/t/jobs/?key={k}", data={"csrf_token": form_token(browser)})
    assert reply.status_code == 303, reply.text
    return str(reply.headers["Location"])


# -- who may -------------------------------------------------------------------------------


def test_anonymous_is_sent_to_the_login_page_and_nothing_runs() -> None:
    k = key()
    anonymous = client()
    for path in (f"/t/stream/?key={k}", "/t/jobs/", "/"):
        reply = anonymous.get(path)
        assert reply.status_code == 302 and reply.headers["Location"].startswith("/login?next=")
    assert anonymous.post(f"/t/jobs/?key={k}").status_code == 400  # CSRFProtect comes first
    reply = anonymous.post(f"/t/jobs/?key={k}", data={"csrf_token": form_token(anonymous, "/login")})
    assert reply.status_code == 302
    assert gates.runs[k] == 0


def test_a_user_without_the_permission_gets_403_and_nothing_runs() -> None:
    k = key()
    carol = client("carol")
    assert carol.get(f"/t/stream/?key={k}").status_code == 403  # the blueprint's before_request
    reply = carol.post(f"/t/jobs/?key={k}", data={"csrf_token": form_token(carol)})
    assert reply.status_code == 403 and reply.data == b"not allowed to start here\n"  # the jobs hook
    assert carol.get(f"/ops/rebuild-cache/?key={k}").status_code == 403  # the example's own stream
    assert gates.runs[k] == 0


def test_a_user_with_the_permission_sees_the_stream_live() -> None:
    k = key()
    body = live(client("bob").get(f"/t/stream/?key={k}", buffered=False), k)
    assert summary(body, "text")["status"] == "ok"
    assert gates.runs[k] == 1


def test_a_post_without_the_csrf_token_is_refused_and_starts_nothing() -> None:
    k = key()
    bob = client("bob")
    before = {job.id for job in flask_site.gated_jobs.records()}
    reply = bob.post(f"/t/jobs/?key={k}")
    assert reply.status_code == 400 and b"CSRF token is missing" in reply.data
    assert gates.runs[k] == 0
    assert {job.id for job in flask_site.gated_jobs.records()} == before


def test_the_jobs_list_form_carries_the_token_that_lets_its_post_through() -> None:
    k = key()
    bob = client("bob")
    page = bob.get("/t/jobs/").text
    assert '<form method="post" action="/t/jobs/"><input type="hidden" name="csrf_token"' in page
    reply = bob.post(f"/t/jobs/?key={k}", data={"csrf_token": token(page), "note": "hi"})
    assert reply.status_code == 303
    gates.release(k)
    with streamed(bob.get(reply.headers["Location"] + "?format=text", buffered=False)) as stream:
        stream.read_to_end()
    assert gates.runs[k] == 1
    # Scripts send the token as Flask-WTF documents, in X-CSRFToken.
    k = key()
    reply = bob.post(f"/t/jobs/?key={k}", headers={"X-CSRFToken": token(page)})
    assert reply.status_code == 303
    gates.release(k)


def test_cancel_needs_the_token_and_the_jobs_owner_or_an_admin() -> None:
    k = key()
    bob = client("bob")
    job = start_job(bob, k)
    assert bob.post(f"{job}/cancel").status_code == 400  # no token
    carol = client("carol")
    assert carol.post(f"{job}/cancel", data={"csrf_token": form_token(carol)}).status_code == 403
    record = flask_site.gated_jobs.lookup(job.rsplit("/", 1)[1])
    assert record is not None and not record.cancel_requested
    ada = client("ada")
    assert ada.post(f"{job}/cancel", data={"csrf_token": form_token(ada)}).status_code == 303
    with streamed(bob.get(f"{job}?format=ndjson", buffered=False)) as stream:
        assert b'"status":"cancelled"' in stream.read_to_end()


def test_each_user_sees_only_their_own_jobs_and_admins_all() -> None:
    bob, ada, carol = client("bob"), client("ada"), client("carol")
    bobs, adas = key(), key()
    bob_job = start_job(bob, bobs).rsplit("/", 1)[1]
    ada_job = start_job(ada, adas).rsplit("/", 1)[1]
    gates.release(bobs)
    gates.release(adas)

    def listed(browser: FlaskClient) -> set[str]:
        return {job["id"] for job in browser.get("/t/jobs/", headers={"Accept": "application/json"}).json["jobs"]}

    assert bob_job in listed(bob) and ada_job not in listed(bob)
    assert {bob_job, ada_job} <= listed(ada)
    assert not {bob_job, ada_job} & listed(carol)
    assert carol.get(f"/t/jobs/{bob_job}").status_code == 403
    record = flask_site.gated_jobs.lookup(bob_job)
    assert record is not None and record.owner == "bob"


def test_a_flask_hook_refuses_a_request_that_did_not_come_through_flask() -> None:
    app = jobs(lambda: None, authorize=hook(lambda action, job: True), owner=owner)
    reply = TestApp(app).get("/", status=403)
    assert reply.text == "this stream is served through Flask only\n"
    assert owner({MOUNTED: True}) is None  # outside a request: nobody


# -- what could hold a stream back, and the host's logging ----------------------------------


def test_a_stream_is_marked_so_compressors_leave_it_alone() -> None:
    k = key()
    response = client("bob").get(f"/t/stream/?key={k}", buffered=False, headers={"Accept-Encoding": "gzip"})
    assert response.headers["Content-Encoding"] == ""
    assert b"second" in live(response, k)


def test_closing_the_response_closes_the_stream_and_cancels_its_operation() -> None:
    k = key()
    with streamed(client("bob").get(f"/t/stream/?key={k}", buffered=False)) as stream:
        stream.read_until(f"first {k}".encode())
    wait_until(lambda: flask_site.stream.running == 0, 10, "the operation to end")
    assert gates.runs[k] == 1


def test_the_hosts_logging_is_untouched() -> None:
    before = logging_snapshot()
    k = key()
    live(client("bob").get(f"/t/stream/?key={k}", buffered=False), k)
    assert logging_snapshot() == before
    assert logging.getLogger("tests.gated").handlers == []


# -- every behaviour of the WSGI layer, through Flask ----------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_streams_to_its_end_through_flask(fmt: str) -> None:
    k = key()
    gates.release(k)
    response = client("bob").get(f"/t/stream/?key={k}&format={fmt}", buffered=False)
    with streamed(response) as stream:
        body = stream.read_to_end()
    assert response.headers["Content-Type"] == MEDIA_TYPES[fmt]
    lines = [line for _, line in records(body, fmt)]
    assert len(lines) == 2 and lines[0].endswith(f"first {k}") and lines[1].endswith(f"second {k}"), lines
    assert summary(body, fmt)["status"] == "ok"


def test_streams_keep_their_buffering_headers_through_flask() -> None:
    k = key()
    response = client("bob").get(f"/t/stream/?key={k}", buffered=False)
    live(response, k)
    assert response.headers["X-Accel-Buffering"] == "no"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "Accept" in response.headers["Vary"]
    assert "Content-Length" not in response.headers


def test_a_job_resumes_after_the_line_a_viewer_had_through_flask() -> None:
    k = key()
    bob = client("bob")
    job = start_job(bob, k)
    gates.release(k)
    with streamed(bob.get(f"{job}?format=ndjson", buffered=False)) as stream:
        whole = stream.read_to_end()
    first = next(o for o in ndjson_objects(whole) if o["event"] == "log")
    with streamed(bob.get(f"{job}?format=ndjson&since={first['seq']}", buffered=False)) as stream:
        rest = stream.read_to_end()
    assert f"first {k}".encode() not in rest and f"second {k}".encode() in rest
    headers = {"Last-Event-ID": str(first["seq"])}
    with streamed(bob.get(f"{job}?format=sse", headers=headers, buffered=False)) as stream:
        assert f"first {k}".encode() not in stream.read_to_end()


def test_head_answers_the_headers_and_runs_nothing_through_flask() -> None:
    k = key()
    reply = client("bob").head(f"/t/stream/?key={k}&format=sse")
    assert reply.status_code == 200
    assert reply.headers["Content-Type"] == "text/event-stream"
    assert reply.data == b""
    assert gates.runs[k] == 0


def test_a_method_the_stream_does_not_serve_is_405_with_allow_through_flask() -> None:
    k = key()
    bob = client("bob")
    reply = bob.put(f"/t/stream/?key={k}", headers={"X-CSRFToken": form_token(bob)})
    assert reply.status_code == 405
    assert reply.headers["Allow"] == "GET, HEAD, POST"
    assert gates.runs[k] == 0


def test_past_max_concurrent_is_503_with_retry_after_through_flask() -> None:
    first, second = key(), key()
    browser = client()
    with streamed(browser.get(f"/t/busy/?key={first}", buffered=False)) as stream:
        stream.read_until(f"first {first}".encode())
        reply = browser.get(f"/t/busy/?key={second}")
        assert reply.status_code == 503
        assert reply.headers["Retry-After"] == "5"
        assert gates.runs[second] == 0
        gates.release(first)
        stream.read_to_end()


def test_an_unknown_job_is_404_and_a_bad_resume_point_400_through_flask() -> None:
    bob = client("bob")
    assert bob.get("/t/jobs/AAAAAAAAAAAAAAAA").status_code == 404
    k = key()
    job = start_job(bob, k)
    gates.release(k)
    reply = bob.get(f"{job}?since=x")
    assert reply.status_code == 400 and b"since" in reply.data


def test_a_body_too_large_is_413_unread_and_runs_nothing_through_flask() -> None:
    k = key()
    bob = client("bob")
    size = 2 << 20
    reply = bob.post(
        f"/t/stream/?key={k}", data=b"x" * size, headers={"X-CSRFToken": form_token(bob), "Content-Type": "text/plain"}
    )
    assert reply.status_code == 413
    assert gates.runs[k] == 0


def test_a_stream_view_mounted_at_one_url_serves_its_pages_script_and_style_at_that_url() -> None:
    host = Flask(__name__)
    host.add_url_rule("/once", "once", stream_view(logstream(lambda: logging.getLogger("once").warning("logged once"))))
    browser = host.test_client()
    page_url = "http://localhost/once?format=html"
    with streamed(browser.get(page_url)) as stream:
        page = parse_html(stream.read_to_end())
    assert [line.rsplit(": ", 1)[-1] for line in page.records] == ["logged once\n"]
    links = {tag: str(a.get("src") or a.get("href")) for tag, _, a in page.elements if tag in ("script", "link")}
    for tag, name in (("link", "viewer.css"), ("script", "viewer.js")):
        url = urljoin(page_url, links[tag])  # as a browser resolves it: the same URL, another query
        assert url == f"http://localhost/once?logstream_asset={load(name).hashed_name}"
        with browser.get(url) as reply:
            assert reply.status_code == 200 and reply.headers["Content-Length"] == str(len(load(name).body))
            assert reply.data == load(name).body and reply.headers["Content-Type"] == load(name).media_type
            assert reply.headers["Cache-Control"] == HASHED_CACHE
    with browser.get("http://localhost/once?logstream_asset=nothing.js") as missing:
        assert missing.status_code == 404
    with browser.get("http://localhost/once/_assets/viewer.js") as below:
        assert below.status_code == 404  # nothing below the URL is routed
