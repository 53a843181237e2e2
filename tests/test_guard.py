"""The cross-site guard: a browser request from another origin may not start, cancel or run anything.

``guard.cross_site_refusal`` decides from the environ alone; these tests go
through each rule of its docstring. The end-to-end tests at the bottom go
through ``logstream()`` and ``jobs()``, where the pipeline asks the guard.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.inproc import call
from tests.servers import wait_until
from wsgi_logstream import jobs, logstream
from wsgi_logstream.guard import cross_site_refusal, normalise_origins
from wsgi_logstream.options import Options


def environ(
    *,
    site: str | None = None,
    origin: str | None = None,
    host: str | None = "127.0.0.1:8000",
    scheme: str = "http",
    mode: str | None = None,
    dest: str | None = None,
    server: tuple[str, str] = ("127.0.0.1", "8000"),
) -> dict[str, Any]:
    env: dict[str, Any] = {"wsgi.url_scheme": scheme, "SERVER_NAME": server[0], "SERVER_PORT": server[1]}
    for key, value in (
        ("HTTP_SEC_FETCH_SITE", site),
        ("HTTP_ORIGIN", origin),
        ("HTTP_HOST", host),
        ("HTTP_SEC_FETCH_MODE", mode),
        ("HTTP_SEC_FETCH_DEST", dest),
    ):
        if value is not None:
            env[key] = value
    return env


NOTHING = frozenset[str]()
OTHER_PORT = "http://127.0.0.1:9999"

ALLOWED = [
    ("curl, a script: no browser headers", environ()),
    ("Sec-Fetch-Site: same-origin", environ(site="same-origin", origin="http://127.0.0.1:8000")),
    ("Sec-Fetch-Site: same-origin, a GET without Origin", environ(site="same-origin")),
    ("Sec-Fetch-Site: none (typed, bookmarked)", environ(site="none", mode="navigate", dest="document")),
    ("Sec-Fetch-Site in capitals", environ(site="Same-Origin")),
    ("no Fetch Metadata, Origin is this server", environ(origin="http://127.0.0.1:8000")),
    ("no Fetch Metadata, Origin in capitals", environ(origin="HTTP://LOCALHOST:8000", host="localhost:8000")),
    ("no Fetch Metadata, Origin with the default port", environ(origin="http://example.com:80", host="example.com")),
    ("no Fetch Metadata, Host with the default port", environ(origin="http://example.com", host="example.com:80")),
    ("https, default port", environ(origin="https://example.com", host="example.com", scheme="https")),
    ("IPv6 loopback", environ(origin="http://[::1]:8000", host="[::1]:8000")),
    (
        "no Host: SERVER_NAME and SERVER_PORT",
        environ(origin="http://10.0.0.5:8080", host=None, server=("10.0.0.5", "8080")),
    ),
    ("unknown Sec-Fetch-Site, own Origin", environ(site="some-future-value", origin="http://127.0.0.1:8000")),
]

REFUSED = [
    (
        "a cross-site form POST",
        environ(site="cross-site", origin="https://evil.example", mode="navigate", dest="document"),
    ),
    ("a cross-site <img> (no-cors GET, no Origin)", environ(site="cross-site", mode="no-cors", dest="image")),
    ("a cross-site <script>", environ(site="cross-site", mode="no-cors", dest="script")),
    ("a cross-site <iframe>", environ(site="cross-site", mode="navigate", dest="iframe")),
    ("another port of 127.0.0.1 (same-site)", environ(site="same-site", origin=OTHER_PORT)),
    ("another port, an <img> (same-site, no Origin)", environ(site="same-site", mode="no-cors", dest="image")),
    (
        "a sibling subdomain (same-site)",
        environ(site="same-site", origin="https://a.example.com", host="b.example.com"),
    ),
    ("cross-site claiming our own Origin", environ(site="cross-site", origin="http://127.0.0.1:8000")),
    ("no Fetch Metadata, another host", environ(origin="https://evil.example")),
    ("no Fetch Metadata, another port", environ(origin=OTHER_PORT)),
    ("no Fetch Metadata, another scheme", environ(origin="https://127.0.0.1:8000")),
    ("no Fetch Metadata, localhost is not 127.0.0.1", environ(origin="http://localhost:8000")),
    (
        "no Fetch Metadata, http page to an https server",
        environ(origin="http://example.com", host="example.com", scheme="https"),
    ),
    ("Origin: null (sandboxed frame, data: URL)", environ(origin="null")),
    ("Origin: NULL", environ(origin="NULL")),
    ("a malformed Origin", environ(origin="http://exa mple.com")),
    ("an Origin with a path", environ(origin="http://127.0.0.1:8000/x")),
    ("an Origin with user info", environ(origin="http://u@127.0.0.1:8000")),
    ("an Origin with a port out of range", environ(origin="http://127.0.0.1:99999")),
    ("unknown Sec-Fetch-Site, no Origin", environ(site="some-future-value")),
    ("unknown Sec-Fetch-Site, another Origin", environ(site="some-future-value", origin=OTHER_PORT)),
    ("a malformed Host: nothing to compare with", environ(origin="http://127.0.0.1:8000", host="127.0.0.1:8000/x")),
]


@pytest.mark.parametrize(("case", "env"), ALLOWED, ids=[case for case, _ in ALLOWED])
def test_same_origin_requests_and_requests_from_no_browser_page_are_allowed(case: str, env: dict[str, Any]) -> None:
    assert cross_site_refusal(env, allowed_origins=NOTHING) is None, case


@pytest.mark.parametrize(("case", "env"), REFUSED, ids=[case for case, _ in REFUSED])
def test_browser_requests_from_another_origin_are_refused_with_a_short_reason(case: str, env: dict[str, Any]) -> None:
    reason = cross_site_refusal(env, allowed_origins=NOTHING)
    assert reason is not None, case
    assert reason.startswith("refused: ") and "\n" not in reason and len(reason) < 160


def test_an_allowed_origin_may_post_from_another_site_or_port_but_not_by_image() -> None:
    allowed = normalise_origins(["https://admin.example.com", OTHER_PORT])
    form = environ(site="cross-site", origin="https://admin.example.com", mode="navigate", dest="document")
    assert cross_site_refusal(form, allowed_origins=allowed) is None
    assert cross_site_refusal(environ(site="same-site", origin=OTHER_PORT), allowed_origins=allowed) is None
    assert cross_site_refusal(environ(origin=OTHER_PORT), allowed_origins=allowed) is None  # older browsers
    # A subresource load carries no Origin: an allowed origin cannot vouch for it.
    image = environ(site="cross-site", mode="no-cors", dest="image")
    assert cross_site_refusal(image, allowed_origins=allowed) is not None
    # Only those origins: a neighbour of an allowed one is not allowed.
    neighbour = environ(site="cross-site", origin="https://admin.example.com:8443")
    assert cross_site_refusal(neighbour, allowed_origins=allowed) is not None


def test_the_guard_changes_nothing_in_the_environ() -> None:
    env = environ(site="cross-site", origin="https://evil.example")
    before = dict(env)
    cross_site_refusal(env, allowed_origins=NOTHING)
    assert env == before


_HEADER = st.one_of(
    st.none(),
    st.sampled_from(["cross-site", "same-site", "same-origin", "none", "null", "http://127.0.0.1:8000", ""]),
    st.text(max_size=40),
)


@settings(max_examples=300, deadline=None)
@given(site=_HEADER, origin=_HEADER, host=_HEADER, scheme=st.sampled_from(["http", "https", "", "ftp"]))
def test_any_headers_get_an_answer_never_an_exception_and_cross_site_is_always_refused(
    site: str | None, origin: str | None, host: str | None, scheme: str
) -> None:
    env = environ(site=site, origin=origin, host=host, scheme=scheme)
    reason = cross_site_refusal(env, allowed_origins=NOTHING)
    assert reason is None or (reason.startswith("refused: ") and "\n" not in reason)
    if site is not None and site.strip().lower() in ("cross-site", "same-site"):
        assert reason is not None
    if site is None and origin is None:
        assert reason is None


# -- normalise_origins: the allowed_origins option ---------------------------------------------------


def test_normalise_origins_writes_origins_as_browsers_send_them() -> None:
    assert normalise_origins(None) == frozenset()
    assert normalise_origins("https://Admin.Example.com") == {"https://admin.example.com"}
    assert normalise_origins(
        ["https://a.example:443", "http://a.example:80", "http://127.0.0.1:8000/", "http://[::1]:8000", "http://h:080"]
    ) == {"https://a.example", "http://a.example", "http://127.0.0.1:8000", "http://[::1]:8000", "http://h"}


@pytest.mark.parametrize(
    "value",
    [
        "*",
        "null",
        "example.com",
        "https://example.com/path",
        "https://u:p@example.com",
        "ftp://example.com",
        "https://example.com?q",
        "https://",
        "https://example.com:99999",
        "",
    ],
)
def test_normalise_origins_refuses_what_is_not_one_origin_with_a_value_error_naming_the_option(value: str) -> None:
    with pytest.raises(ValueError, match="allowed_origins"):
        normalise_origins([value])


@pytest.mark.parametrize("value", [42, [b"https://example.com"], [None], object()])
def test_normalise_origins_refuses_other_types_with_a_type_error_naming_the_option(value: Any) -> None:
    with pytest.raises(TypeError, match="allowed_origins"):
        normalise_origins(value)


def test_normalise_origins_agrees_with_the_allowed_origins_option() -> None:
    for value in (["https://Admin.Example.com:443"], ["http://127.0.0.1:8000/"], ["http://[::1]:8000"], "http://a:80"):
        assert normalise_origins(value) == Options.from_kwargs(allowed_origins=value).allowed_origins


# -- end to end: the guard in the pipeline (wired by the lead) ---------------------------------------

CROSS_SITE_FORM = {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example", "Sec-Fetch-Mode": "navigate"}
CROSS_SITE_IMAGE = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"}


def _counting() -> tuple[list[int], Any]:
    runs: list[int] = []

    def target() -> None:
        runs.append(1)

    return runs, target


def test_a_cross_site_form_post_starts_no_job() -> None:
    runs, target = _counting()
    app = jobs(target)
    try:
        reply = call(app, method="POST", headers=CROSS_SITE_FORM)
        assert reply.code == 403
        assert reply.read_to_end().startswith(b"refused")
        assert app.records() == [] and runs == []
    finally:
        app.shutdown()


def test_a_cross_site_post_cancels_no_job() -> None:
    release = threading.Event()
    app = jobs(lambda: release.wait(10))
    try:
        job = app.start()
        reply = call(app, path=f"/{job.id}/cancel", method="POST", headers=CROSS_SITE_FORM)
        assert reply.code == 403
        reply.read_to_end()
        release.set()
        assert job.wait(10) and job.status == "ok"
    finally:
        release.set()
        app.shutdown()


def test_a_cross_site_image_runs_no_plain_stream_target() -> None:
    runs, target = _counting()
    reply = call(logstream(target), "format=text", headers=CROSS_SITE_IMAGE)
    assert reply.code == 403
    reply.read_to_end()
    assert runs == []


def test_another_port_of_the_same_host_starts_no_job_unless_its_origin_is_allowed() -> None:
    headers = {"Sec-Fetch-Site": "same-site", "Origin": "http://127.0.0.1:9999", "Host": "127.0.0.1:8000"}
    runs, target = _counting()
    refusing, allowing = jobs(target), jobs(target, allowed_origins=["http://127.0.0.1:9999"])
    try:
        first = call(refusing, method="POST", headers=headers)
        assert first.code == 403
        first.read_to_end()
        second = call(allowing, method="POST", headers=headers)
        assert second.code == 303
        second.read_to_end()
        wait_until(lambda: runs == [1], message="the allowed origin's job to run, and only it")
    finally:
        refusing.shutdown()
        allowing.shutdown()


def test_an_older_browser_post_from_another_origin_starts_no_job() -> None:
    runs, target = _counting()
    app = jobs(target)
    try:
        reply = call(app, method="POST", headers={"Origin": "https://evil.example"})
        assert reply.code == 403
        reply.read_to_end()
        assert runs == []
    finally:
        app.shutdown()


def test_a_cross_site_request_may_still_view_a_job_and_curl_may_still_start_one() -> None:
    # Viewing is not guarded, and requests without browser headers keep working.
    runs, target = _counting()
    app = jobs(target)
    try:
        started = call(app, method="POST")
        assert started.code == 303
        started.read_to_end()
        wait_until(lambda: runs == [1], message="the job curl started to run")
        (job,) = app.records()
        view = call(app, "format=text", path=f"/{job.id}", headers=CROSS_SITE_IMAGE)
        assert view.code == 200
        view.read_to_end()
    finally:
        app.shutdown()
