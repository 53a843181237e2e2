"""Streams and jobs inside Django, with Django's real test client: login, permissions, CSRF, admin, middleware.

The project is the example's (``examples/django_project``: sessions, auth,
CSRF, messages, ``GZipMiddleware`` and ``ConditionalGetMiddleware``
installed), with the test streams of :mod:`tests.apps.django_site` beside
its own. A refused request is shown to have run nothing by the target's run
count; a stream is shown live by reading its first line while the target
waits for the test to release it.
"""

from __future__ import annotations

import gzip
import itertools
import json
import logging
import re
from typing import Any, Iterator
from urllib.parse import urljoin

import pytest

from tests.apps import django_site  # sets Django up: first

# isort: split
from django.contrib.auth.models import User
from django.test import Client, override_settings

from examples.django_project.catalog.models import Product
from examples.django_project.ops import reindex_jobs
from tests.apps.gates import read_live
from tests.inproc import Chunks, logging_snapshot
from tests.servers import wait_until
from tests.wire import FORMATS, MEDIA_TYPES, ndjson_objects, parse_html, records, summary
from wsgi_logstream import jobs
from wsgi_logstream.assets import HASHED_CACHE, load
from wsgi_logstream.django import REQUEST, hook, stream_view

_keys = itertools.count()


@pytest.fixture(autouse=True)
def test_urls() -> Iterator[None]:
    with override_settings(ROOT_URLCONF="tests.apps.django_site"):  # as tests.apps.django_settings has it
        yield


@pytest.fixture(autouse=True)
def jobs_end() -> Iterator[None]:
    yield
    assert django_site.gated_jobs.shutdown(10) and reindex_jobs.shutdown(10), "a job did not end when cancelled"


def key() -> str:
    return f"dj{next(_keys)}"


def client(user: str | None = None, **defaults: Any) -> Client:
    made = Client(**{"HTTP_HOST": "localhost", **defaults})
    if user is not None:
        made.force_login(User.objects.get(username=user))
    return made


def streamed(response: Any) -> Chunks:
    """A streaming response read chunk by chunk, closed as Django's server closes it."""
    assert response.streaming, f"not a streaming response: {response.status_code} {response.content[:200]!r}"
    return Chunks(response.streaming_content, response.close)


def live(response: Any, k: str) -> bytes:
    """Read ``first k`` while the target waits, then release it and read to the end."""
    with streamed(response) as stream:
        return read_live(stream, k)


def start_job(user: str, path: str = "/t/jobs/", query: str = "") -> str:
    k = key() if not query else ""
    reply = client(user).post(f"{path}?{query or 'key=' + k}")
    assert reply.status_code == 303, reply.content
    location = reply.headers["Location"]
    assert location.startswith(path)
    django_site.release(k)
    return location.rsplit("/", 1)[1]


# -- who may -------------------------------------------------------------------------------


def test_anonymous_is_sent_to_the_login_page_and_nothing_runs() -> None:
    k = key()
    anonymous = client()
    for method, path in (("get", f"/t/stream/?key={k}"), ("post", f"/t/jobs/?key={k}"), ("get", "/t/jobs/")):
        reply = getattr(anonymous, method)(path)
        assert reply.status_code == 302
        assert reply.headers["Location"].startswith("/accounts/login/?next=")
    assert django_site.runs[k] == 0


def test_a_user_without_the_permission_gets_403_and_nothing_runs() -> None:
    k = key()
    carol = client("carol")
    assert carol.get(f"/t/stream/?key={k}").status_code == 403  # permission_required on the pattern
    reply = carol.post(f"/t/jobs/?key={k}")  # the jobs hook: start needs the permission
    assert reply.status_code == 403 and reply.content == b"not allowed to start here\n"
    assert carol.get(f"/ops/reindex/?key={k}").status_code == 403  # the example's own stream
    assert django_site.runs[k] == 0


def test_a_user_with_the_permission_sees_the_stream_live() -> None:
    k = key()
    body = live(client("bob").get(f"/t/stream/?key={k}"), k)
    assert summary(body, "text")["status"] == "ok"
    assert django_site.runs[k] == 1


def test_logging_in_through_the_login_form_reaches_the_stream() -> None:
    browser = client(enforce_csrf_checks=True)
    page = browser.get("/accounts/login/")
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.content)
    assert token is not None
    reply = browser.post(
        "/accounts/login/", {"username": "bob", "password": "pw", "csrfmiddlewaretoken": token.group(1).decode()}
    )
    assert reply.status_code == 302 and reply.headers["Location"] == "/"
    k = key()
    assert b"second " + k.encode() in live(browser.get(f"/t/stream/?key={k}"), k)


def test_a_post_without_the_csrf_token_is_refused_and_starts_nothing() -> None:
    k = key()
    browser = client("bob", enforce_csrf_checks=True)
    before = {job.id for job in django_site.gated_jobs.records()}
    reply = browser.post(f"/t/jobs/?key={k}")
    assert reply.status_code == 403 and b"CSRF" in reply.content
    assert django_site.runs[k] == 0
    assert {job.id for job in django_site.gated_jobs.records()} == before


def test_the_jobs_list_form_carries_the_token_that_lets_its_post_through() -> None:
    browser = client("bob", enforce_csrf_checks=True)
    page = browser.get("/t/jobs/")
    assert page.status_code == 200
    token = re.search(rb'<input type="hidden" name="csrfmiddlewaretoken" value="([^"]+)">', page.content)
    assert token is not None, page.content
    k = key()
    reply = browser.post(f"/t/jobs/?key={k}", {"csrfmiddlewaretoken": token.group(1).decode(), "note": "hi"})
    assert reply.status_code == 303
    django_site.release(k)
    assert django_site.runs[k] == 1


def test_cancel_needs_the_token_and_the_jobs_owner_or_staff() -> None:
    k = key()
    reply = client("bob").post(f"/t/jobs/?key={k}")
    job = reply.headers["Location"]
    strict = client("bob", enforce_csrf_checks=True)
    assert strict.post(f"{job}/cancel").status_code == 403  # no token
    assert client("carol").post(f"{job}/cancel").status_code == 403  # not hers
    record = django_site.gated_jobs.lookup(job.rsplit("/", 1)[1])
    assert record is not None and not record.cancel_requested
    assert client("ada").post(f"{job}/cancel").status_code == 303  # staff
    with streamed(client("bob").get(f"{job}?format=ndjson")) as stream:
        body = stream.read_to_end()
    assert b'"status":"cancelled"' in body


def test_each_user_sees_only_their_own_jobs_and_staff_all() -> None:
    bob = start_job("bob")
    ada = start_job("ada")

    def listed(user: str) -> set[str]:
        reply = client(user).get("/t/jobs/", HTTP_ACCEPT="application/json")
        return {job["id"] for job in json.loads(reply.content)["jobs"]}

    assert bob in listed("bob") and ada not in listed("bob")
    assert {bob, ada} <= listed("ada")
    assert not {bob, ada} & listed("carol")
    page = client("bob").get("/t/jobs/").content.decode()
    assert bob in page and ada not in page
    assert client("carol").get(f"/t/jobs/{bob}").status_code == 403
    record = django_site.gated_jobs.lookup(bob)
    assert record is not None and record.owner == "bob"


def test_the_hook_is_given_the_django_request_with_its_user() -> None:
    seen: list[tuple[str, str]] = []

    def note(request: Any, action: str, job: Any) -> bool:
        seen.append((request.user.get_username(), action))
        return True

    app = jobs(lambda: None, authorize=hook(note))
    view = stream_view(app)
    from django.test import RequestFactory

    request = RequestFactory().get("/x/", HTTP_HOST="localhost")
    request.user = User.objects.get(username="carol")
    response = view(request, "")
    assert response.status_code == 200
    assert seen == [("carol", "list")]


def test_a_django_hook_refuses_a_request_that_did_not_come_through_django() -> None:
    from tests.inproc import TestApp

    app = jobs(lambda: None, authorize=hook(lambda request, action, job: True))
    reply = TestApp(app).get("/", status=403)
    assert reply.text == "this stream is served through Django only\n"
    assert REQUEST == "wsgi_logstream.django.request"


def test_a_disallowed_host_is_refused_before_anything_runs() -> None:
    k = key()
    reply = client("bob", HTTP_HOST="evil.example").get(f"/t/stream/?key={k}")
    assert reply.status_code == 400
    assert django_site.runs[k] == 0


# -- the admin action ------------------------------------------------------------------------


def test_the_admin_action_starts_a_job_for_the_selected_objects_and_redirects_to_it() -> None:
    products = [Product.objects.create(name=f"lamp {n}") for n in range(3)]
    chosen = [products[0].pk, products[2].pk]
    admin = client("ada")
    reply = admin.post(
        "/admin/catalog/product/",
        {"action": "start_reindex_search_job", "_selected_action": [str(pk) for pk in chosen], "index": "0"},
    )
    assert reply.status_code == 302, reply.content[:500]
    job = reply.headers["Location"]
    assert re.fullmatch(r"/ops/jobs/[A-Za-z0-9_-]+", job)
    with streamed(admin.get(f"{job}?format=text")) as stream:
        body = stream.read_to_end()
    assert b"reindexing 2 selected products" in body
    assert b"indexed lamp 0" in body and b"indexed lamp 2" in body and b"lamp 1" not in body
    assert summary(body, "text")["status"] == "ok"
    record = reindex_jobs.lookup(job.rsplit("/", 1)[1])
    assert record is not None and record.owner == "ada"
    assert Product.objects.filter(pk__in=chosen, indexed_at__isnull=False).count() == 2
    assert Product.objects.get(pk=products[1].pk).indexed_at is None


def test_the_admin_action_refused_by_the_hook_starts_nothing() -> None:
    product = Product.objects.create(name="chair")
    admin = User.objects.create_user("dora", password="pw", is_staff=True)
    from django.contrib.auth.models import Permission

    admin.user_permissions.add(Permission.objects.get(codename="view_product"))
    browser = client("dora")
    before = {job.id for job in reindex_jobs.records()}
    page = browser.get("/admin/catalog/product/")
    assert b"start_reindex_search_job" not in page.content  # the action needs the permission to show
    reply = browser.post(
        "/admin/catalog/product/",
        {"action": "start_reindex_search_job", "_selected_action": [str(product.pk)], "index": "0"},
        follow=True,
    )
    assert reply.status_code == 200
    assert {job.id for job in reindex_jobs.records()} == before


# -- middleware that could hold a stream back ------------------------------------------------


def test_gzip_middleware_installed_does_not_buffer_the_stream() -> None:
    k = key()
    response = client("bob").get(f"/t/stream/?key={k}", HTTP_ACCEPT_ENCODING="gzip, deflate, br")
    body = live(response, k)  # under GZipMiddleware's compressor, the first line would not come out before the end
    assert response.headers["Content-Encoding"] == ""  # the mark that made GZipMiddleware leave it alone
    assert body.startswith(b"-- Log stream: started")
    # ... while the site's own pages are still compressed.
    page = client("bob").get("/t/jobs/", HTTP_ACCEPT_ENCODING="gzip")
    assert page.headers["Content-Encoding"] == "gzip"
    assert b"<h1>Log stream</h1>" in gzip.decompress(page.content)


def test_conditional_get_middleware_neither_tags_nor_shortcuts_a_stream() -> None:
    k = key()
    response = client("bob").get(f"/t/stream/?key={k}", HTTP_IF_NONE_MATCH="*", HTTP_IF_MODIFIED_SINCE="x")
    assert response.status_code == 200
    assert "ETag" not in response.headers and "Last-Modified" not in response.headers
    assert b"second" in live(response, k)


def test_closing_the_response_closes_the_stream_and_cancels_its_operation() -> None:
    k = key()
    with streamed(client("bob").get(f"/t/stream/?key={k}")) as stream:
        stream.read_until(f"first {k}".encode())
    # on_disconnect="cancel": the target's wait_cancelled() turned true when Django closed the response.
    wait_until(lambda: django_site.stream.running == 0, 10, "the operation to end")
    assert django_site.runs[k] == 1


def test_the_hosts_logging_is_untouched() -> None:
    before = logging_snapshot()
    k = key()
    live(client("bob").get(f"/t/stream/?key={k}"), k)
    assert logging_snapshot() == before
    assert logging.getLogger("tests.gated").handlers == []


# -- every behaviour of the WSGI layer, through Django -----------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_streams_to_its_end_through_django(fmt: str) -> None:
    k = key()
    django_site.release(k)
    response = client("bob").get(f"/t/stream/?key={k}&format={fmt}")
    with streamed(response) as stream:
        body = stream.read_to_end()
    assert response.headers["Content-Type"] == MEDIA_TYPES[fmt]
    lines = [line for _, line in records(body, fmt)]
    assert len(lines) == 2 and lines[0].endswith(f"first {k}") and lines[1].endswith(f"second {k}"), lines
    assert summary(body, fmt)["status"] == "ok"


def test_streams_keep_their_buffering_headers_through_django() -> None:
    k = key()
    response = client("bob").get(f"/t/stream/?key={k}")
    live(response, k)
    assert response.headers["X-Accel-Buffering"] == "no"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "Accept" in response.headers["Vary"]
    assert "Content-Length" not in response.headers


def test_a_job_resumes_after_the_line_a_viewer_had_through_django() -> None:
    k = key()
    reply = client("bob").post(f"/t/jobs/?key={k}")
    job = reply.headers["Location"]
    django_site.release(k)
    with streamed(client("bob").get(f"{job}?format=ndjson")) as stream:
        whole = stream.read_to_end()
    first = next(o for o in ndjson_objects(whole) if o["event"] == "log")
    with streamed(client("bob").get(f"{job}?format=ndjson&since={first['seq']}")) as stream:
        rest = stream.read_to_end()
    assert f"first {k}".encode() not in rest and f"second {k}".encode() in rest
    with streamed(client("bob").get(f"{job}?format=sse", HTTP_LAST_EVENT_ID=str(first["seq"]))) as stream:
        assert f"first {k}".encode() not in stream.read_to_end()


def test_head_answers_the_headers_and_runs_nothing_through_django() -> None:
    k = key()
    reply = client("bob").head(f"/t/stream/?key={k}&format=sse")
    assert reply.status_code == 200
    assert reply.headers["Content-Type"] == "text/event-stream"
    assert b"".join(reply.streaming_content) == b""
    reply.close()
    assert django_site.runs[k] == 0


def test_a_method_the_stream_does_not_serve_is_405_with_allow_through_django() -> None:
    k = key()
    reply = client("bob").put(f"/t/stream/?key={k}")
    assert reply.status_code == 405
    assert reply.headers["Allow"] == "GET, HEAD, POST"
    assert django_site.runs[k] == 0


def test_past_max_concurrent_is_503_with_retry_after_through_django() -> None:
    first, second = key(), key()
    with streamed(client("bob").get(f"/t/busy/?key={first}")) as stream:
        stream.read_until(f"first {first}".encode())
        reply = client("bob").get(f"/t/busy/?key={second}")
        assert reply.status_code == 503
        assert reply.headers["Retry-After"] == "5"
        assert django_site.runs[second] == 0
        django_site.release(first)
        stream.read_to_end()


def test_an_unknown_job_is_404_and_a_bad_resume_point_400_through_django() -> None:
    assert client("bob").get("/t/jobs/AAAAAAAAAAAAAAAA").status_code == 404
    job = start_job("bob")
    reply = client("bob").get(f"/t/jobs/{job}?since=x")
    assert reply.status_code == 400 and b"since" in reply.content


def test_a_stream_view_mounted_at_one_url_streams_and_a_django_hook_may_ask_for_a_login() -> None:
    from django.test import RequestFactory

    from wsgi_logstream import Refused, logstream

    def ask(request: Any, action: str, job: Any) -> bool:
        if not request.user.is_authenticated:
            raise Refused("log in to reindex", status=401)
        return True

    k = key()
    django_site.release(k)
    view = stream_view(logstream(django_site.gated, formatter="%(message)s", authorize=hook(ask)))
    request = RequestFactory().get(f"/ops/once?key={k}", HTTP_HOST="localhost")
    from django.contrib.auth.models import AnonymousUser

    request.user = AnonymousUser()
    refused = view(request)
    assert refused.status_code == 401 and refused.content == b"log in to reindex\n"
    assert django_site.runs[k] == 0
    request.user = User.objects.get(username="carol")
    with streamed(view(request)) as stream:
        assert f"second {k}".encode() in stream.read_to_end()


def test_a_stream_view_mounted_at_one_url_serves_its_pages_script_and_style_at_that_url() -> None:
    browser = client()
    page_url = "http://localhost/t/once/?format=html"
    with streamed(browser.get(page_url)) as stream:
        page = parse_html(stream.read_to_end())
    assert page.records == ["logged once\n"]
    links = {tag: str(a.get("src") or a.get("href")) for tag, _, a in page.elements if tag in ("script", "link")}
    for tag, name in (("link", "viewer.css"), ("script", "viewer.js")):
        url = urljoin(page_url, links[tag])  # as a browser resolves it: the same URL, another query
        assert url == f"http://localhost/t/once/?logstream_asset={load(name).hashed_name}"
        reply = browser.get(url)
        assert not reply.streaming and reply.status_code == 200
        assert reply.content == load(name).body and reply["Content-Type"] == load(name).media_type
        assert reply["Cache-Control"] == HASHED_CACHE
    assert browser.get("http://localhost/t/once/?logstream_asset=nothing.js").status_code == 404
    assert browser.get("http://localhost/t/once/_assets/viewer.js").status_code == 404  # nothing below the URL
